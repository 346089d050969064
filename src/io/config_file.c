/* Reading a config file: libinih drives the parse through our line
 * reader, which counts lines, sees every section header (even of empty
 * sections) and rejects a header without its ']'; keys given twice in a
 * section are errors. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "io/config_internal.h"
#include "mpitrain/core.h"

/* State of one file read: inih calls our reader line by line, so the
 * reader counts lines and sees section headers (even of empty sections,
 * for which inih would call no handler). */
typedef struct parse_ctx {
    mt_config *c;
    FILE *fp;
    int line;
    char section[64];
    long layer; /* index into c->layers for a layer section, else -1 */
    unsigned seen; /* bit i: mt__singletons[i] already had its section */
    /* Keys of the current section and their lines: a key given twice is
     * an error (as Python's configparser), not the last line winning. */
    struct {
        char key[64];
        int line;
    } keys[128];
    size_t n_keys;
    int rc;
    char *err;
} parse_ctx;

static void fail(parse_ctx *p, int rc) { p->rc = p->rc ? p->rc : rc; }

static void new_section(parse_ctx *p, const char *name)
{
    char where[MT_PATH_LEN + 32];
    snprintf(where, sizeof where, "%s:%d", p->c->path, p->line);
    snprintf(p->section, sizeof p->section, "%s", name);
    p->layer = -1;
    p->n_keys = 0;
    /* [search] belongs to `mpitrain search` (src/search/), which reads it
     * itself; a training run ignores it, so one file serves both. */
    if (strcmp(name, "search") == 0)
        return;
    int s = mt_name_index(mt__singletons, name);
    if (s >= 0) {
        if (p->seen & (1u << s)) {
            mt_seterr(p->err, "%s: section [%s] appears twice", where, name);
            fail(p, MT_EINVAL);
        }
        p->seen |= 1u << s;
        return;
    }
    if (p->c->softmax_line) {
        mt_seterr(p->err, "%s: [%s] after [softmax]: [softmax] must be the "
                          "last section",
                  where, name);
        fail(p, MT_EINVAL);
        return;
    }
    if (strcmp(name, "softmax") == 0) {
        p->c->softmax_line = p->line;
        return;
    }
    int kind = mt_layer_kind_from_name(name);
    if (kind < 0) {
        mt_seterr(p->err, "%s: unknown section [%s]", where, name);
        fail(p, MT_EINVAL);
        return;
    }
    if (mt__config_add_layer(p->c, (mt_layer_kind)kind, p->line) != MT_OK) {
        mt_seterr(p->err, "%s: out of memory", where);
        fail(p, MT_ENOMEM);
        return;
    }
    p->layer = (long)p->c->n_layers - 1;
}

static char *reader(char *str, int num, void *stream)
{
    parse_ctx *p = stream;
    if (p->rc || !fgets(str, num, p->fp))
        return NULL;
    p->line++;
    size_t len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(p->fp)) {
        mt_seterr(p->err, "%s:%d: line longer than %d characters", p->c->path,
                  p->line, num - 2);
        fail(p, MT_EINVAL);
        return NULL;
    }
    const char *s = str;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e || e - s - 1 >= 63) {
            /* inih would take the next key for one before any section. */
            mt_seterr(p->err, "%s:%d: section header %.*s %s", p->c->path,
                      p->line, (int)strcspn(s, "\r\n"), s,
                      e ? "is too long" : "lacks its ']'");
            fail(p, MT_EINVAL);
            return NULL;
        }
        char name[64];
        memcpy(name, s + 1, (size_t)(e - s - 1));
        name[e - s - 1] = '\0';
        new_section(p, name);
    }
    return str;
}

/* Whether key was already given in this section (an error, set in p);
 * otherwise remembers it. */
static int given_before(parse_ctx *p, const char *key, const char *where)
{
    for (size_t i = 0; i < p->n_keys; i++)
        if (strcmp(p->keys[i].key, key) == 0) {
            mt_seterr(p->err, "%s: [%s] key '%s' given twice (first on line "
                              "%d)",
                      where, p->section, key, p->keys[i].line);
            fail(p, MT_EINVAL);
            return 1;
        }
    /* Past 128 keys in one section, all but the known ones are errors. */
    if (p->n_keys < sizeof p->keys / sizeof *p->keys) {
        snprintf(p->keys[p->n_keys].key, sizeof p->keys[0].key, "%s", key);
        p->keys[p->n_keys++].line = p->line;
    }
    return 0;
}

static int handler(void *user, const char *section, const char *key,
                   const char *value)
{
    parse_ctx *p = user;
    if (p->rc)
        return 0;
    char where[MT_PATH_LEN + 32];
    snprintf(where, sizeof where, "%s:%d", p->c->path, p->line);
    if (!section[0]) {
        mt_seterr(p->err, "%s: key '%s' before any [section]", where, key);
        fail(p, MT_EINVAL);
        return 0;
    }
    if (strcmp(p->section, "search") == 0)
        return 1;
    if (strcmp(p->section, "softmax") == 0) {
        mt_seterr(p->err, "%s: [softmax] takes no keys (got '%s')", where,
                  key);
        fail(p, MT_EINVAL);
        return 0;
    }
    if (given_before(p, key, where))
        return 0;
    int rc = mt__config_apply(p->c, where, p->section, p->layer, key, value, p->err);
    if (rc)
        fail(p, rc);
    return rc == MT_OK;
}

int mt__config_read_file(mt_config *c, const char *path, char *err)
{
    snprintf(c->path, sizeof c->path, "%s", path);
    parse_ctx p = {.c = c, .layer = -1, .err = err};
    p.fp = fopen(path, "r");
    if (!p.fp) {
        mt_seterr(err, "config %s: %s", path, strerror(errno));
        return MT_EIO;
    }
    int rc = ini_parse_stream(reader, &p, handler, &p);
    fclose(p.fp);
    if (p.rc)
        return p.rc;
    if (rc > 0) {
        mt_seterr(err, "%s:%d: syntax error (want [section] or key = value)",
                  path, rc);
        return MT_EINVAL;
    }
    return rc == 0 ? MT_OK : MT_EIO;
}
