/* Minimal JSON: an appending writer for the node's messages and a strict
 * pull reader (RFC 8259 syntax, no allocation) for the manifest. */
#ifndef TFN_JSON_H
#define TFN_JSON_H

#include <stddef.h>
#include <stdint.h>

/* ---- writer: errors are sticky; check `err` once at the end. */
typedef struct {
    char *buf;
    size_t cap, len;
    int err;   /* 1 once anything did not fit */
    int first; /* no comma before the next member */
} tfn_jw;

void tfn_jw_init(tfn_jw *w, char *buf, size_t cap);
void tfn_jw_begin(tfn_jw *w, char open);  /* '{' or '[' */
void tfn_jw_end(tfn_jw *w, char close);   /* '}' or ']' */
void tfn_jw_key(tfn_jw *w, const char *key); /* member name (inside an object) */
void tfn_jw_next(tfn_jw *w);              /* comma between array elements */
void tfn_jw_str(tfn_jw *w, const char *s);
void tfn_jw_int(tfn_jw *w, int64_t v);
/* 7 significant digits at most (float32 precision); non-finite values are written as 0. */
void tfn_jw_float(tfn_jw *w, float v);
void tfn_jw_bool(tfn_jw *w, int v);

/* ---- reader */
typedef enum { TFN_J_ERR = 0, TFN_J_OBJ, TFN_J_ARR, TFN_J_STR, TFN_J_INT, TFN_J_FLOAT,
               TFN_J_TRUE, TFN_J_FALSE, TFN_J_NULL } tfn_jtype;

typedef struct {
    const char *p, *end;
    int depth;
} tfn_jr;

void tfn_jr_init(tfn_jr *r, const char *text, size_t len);
/* Type of the next value (after whitespace), without consuming it. */
tfn_jtype tfn_jr_peek(tfn_jr *r);
/* Decodes a string value into out (UTF-8, NUL-terminated). -1 on bad syntax,
 * bad escape, lone surrogate or when it does not fit in cap. */
int tfn_jr_string(tfn_jr *r, char *out, size_t cap, size_t *len);
/* An integer value (no fraction or exponent) within +-10^18. */
int tfn_jr_int(tfn_jr *r, int64_t *v);
int tfn_jr_bool(tfn_jr *r, int *v);
/* Skips any value (depth-limited). */
int tfn_jr_skip(tfn_jr *r);
/* Containers: call open, then loop on more() (1 = another member follows,
 * 0 = closed, -1 = error); objects also call key() for each member. */
int tfn_jr_open(tfn_jr *r, char open);
int tfn_jr_more(tfn_jr *r, char close, int *first);
int tfn_jr_key(tfn_jr *r, char *out, size_t cap); /* a key too long for out reads as "" */
/* 0 when only whitespace remains. */
int tfn_jr_done(tfn_jr *r);

#endif
