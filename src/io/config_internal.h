/* Private to the config reader: the key table. */
#ifndef MPITRAIN_IO_CONFIG_INTERNAL_H
#define MPITRAIN_IO_CONFIG_INTERNAL_H

#include "mpitrain/config.h"

typedef enum mt__key_type {
    T_SIZE,   /* size_t, decimal; with names, names[0] is the word for 0 */
    T_U64,    /* uint64_t, decimal */
    T_DOUBLE, /* double */
    T_FLOAT,  /* float */
    T_OPT_FLOAT, /* float, NaN while unset; not written when unset */
    T_BOOL,   /* int: true/false, yes/no, on/off, 1/0 */
    T_PATH,   /* char[MT_PATH_LEN] */
    T_ENUM,   /* int: index into names */
    T_ACT     /* int: activation layer kind or -1 ("none") */
} mt__key_type;

typedef struct mt__key_def {
    const char *section; /* singleton section, or layer kind name */
    const char *key;
    mt__key_type type;
    size_t off;      /* into mt_config, or into mt_config_layer */
    double min, max; /* inclusive range for numbers */
    const char *const *names; /* T_ENUM: NULL-terminated */
    const char *def; /* the default, as INI text; NULL: zero (unset for
                        T_OPT_FLOAT, required or empty for the others) */
} mt__key_def;

/* The sections that appear once ([run] [data] ...), in the order the
 * resolved configuration is written; NULL-terminated. Every other
 * section is a layer. */
extern const char *const mt__singletons[];
extern const mt__key_def mt__config_keys[];
extern const mt__key_def mt__layer_keys[];

/* config.c: applies key = value in `section` (a singleton name, or a
 * layer kind for c->layers[layer]); `where` is "file:line" or "--set
 * ...". Appends a layer of `kind` with its defaults, from config line
 * `line`. */
int mt__config_apply(mt_config *c, const char *where, const char *section,
                     long layer, const char *key, const char *value,
                     char *err);
int mt__config_add_layer(mt_config *c, mt_layer_kind kind, int line);
/* config_file.c: reads the INI file at path into c. */
int mt__config_read_file(mt_config *c, const char *path, char *err);

#endif
