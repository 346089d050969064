/* Differences between two resolved configurations, for the warning a
 * resumed run prints when its configuration is not the checkpoint's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config_internal.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"

typedef struct entry {
    char name[96];   /* "train.epochs", "layer3.units", or "layer3" */
    char value[160]; /* the value, or "[kind]" for a layer section */
} entry;

static int is_singleton(const char *section)
{
    return mt_name_index(mt__singletons, section) >= 0;
}

/* The lines of mt_config_write's text as named entries; *n set. The
 * caller frees the array. */
static entry *parse(const char *text, size_t *n)
{
    size_t cap = 64, layer = 0;
    entry *e = malloc(cap * sizeof *e);
    char section[64] = "";
    *n = 0;
    for (const char *p = text ? text : ""; e && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[320];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (eol != NULL);
        if (*n == cap) {
            entry *grown = realloc(e, 2 * cap * sizeof *e);
            if (!grown) {
                free(e);
                return NULL;
            }
            e = grown;
            cap *= 2;
        }
        entry *x = &e[*n];
        char key[64], *eq = strstr(line, " = ");
        if (line[0] == '[' && sscanf(line, "[%63[^]]]", section) == 1) {
            if (is_singleton(section))
                continue;
            snprintf(x->name, sizeof x->name, "layer%zu", ++layer);
            snprintf(x->value, sizeof x->value, "[%s]", section);
            (*n)++;
        } else if (eq && (size_t)(eq - line) < sizeof key) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - line), line);
            if (is_singleton(section))
                snprintf(x->name, sizeof x->name, "%s.%s", section, key);
            else
                snprintf(x->name, sizeof x->name, "layer%zu.%s", layer, key);
            snprintf(x->value, sizeof x->value, "%s", eq + 3);
            (*n)++;
        }
    }
    return e;
}

static const entry *find(const entry *e, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0)
            return &e[i];
    return NULL;
}

size_t mt_config_diff(const char *before, const char *after,
                      void (*emit)(const char *line, void *user), void *user)
{
    size_t na, nb, count = 0;
    entry *a = parse(before, &na), *b = parse(after, &nb);
    char line[512];
    for (size_t i = 0; a && b && i < na; i++) {
        const entry *o = find(b, nb, a[i].name);
        if (o && strcmp(o->value, a[i].value) == 0)
            continue;
        snprintf(line, sizeof line, "%s: %s -> %s", a[i].name, a[i].value,
                 o ? o->value : "(unset)");
        emit(line, user);
        count++;
    }
    for (size_t i = 0; a && b && i < nb; i++) {
        if (find(a, na, b[i].name))
            continue;
        snprintf(line, sizeof line, "%s: (unset) -> %s", b[i].name,
                 b[i].value);
        emit(line, user);
        count++;
    }
    free(a);
    free(b);
    return count;
}
