/* Leveled one-line-per-event logging to stderr, key=value (logfmt) or one JSON object per line. Audit records
 * never go through here. Callers always write logfmt fragments (msg="..." key=value, peer values through
 * log_quote); the JSON format is derived from them, so both formats carry the same fields. */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Parses "debug|info|warn|error|off"; returns the level or -EINVAL. */
int log_level_parse(const char *s);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
enum log_format { LOG_FMT_LOGFMT = 0, LOG_FMT_JSON };
/* Parses "logfmt|json"; returns the format or -EINVAL. */
int log_format_parse(const char *s);
void log_set_format(enum log_format f);

/* Reads the optional log_level and log_format keys of a config mapping. *level and *format keep their values
 * when a key is absent; 0, or -EINVAL with the error (file, line, key) in cfg_error(d). */
struct fy_node;
typedef struct cfg_doc cfg_doc;
int log_config_read(cfg_doc *d, struct fy_node *root, int *level, int *format);

/* Component tag shown as comp=...; a static string, e.g. "edge". */
void log_set_component(const char *comp);

/* fmt is the rest of the line, normally "msg=\"...\" key=value ...". */
void log_emit(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_get_level() <= LOG_DEBUG) log_emit(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_emit(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_emit(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_emit(LOG_ERROR, __VA_ARGS__)

/* Copies s into out (cap outlen) quoted for a key=value line: control bytes escaped, length capped. */
const char *log_quote(const char *s, char *out, size_t outlen);

#endif
