/* The one libcurl loader: libcurl is dlopen'ed on first use, not linked. The release binary links its
 * libraries statically (cold start of `sandbox run`), and a dynamic libcurl would pull a dozen libraries
 * and a second OpenSSL into every start of every command. Used by the proxy's jwks fetcher (easy
 * interface on a thread) and the worker's HTTP client (multi socket interface on the loop).
 *
 * Include this header instead of using curl's functions by name: the macros below route curl_easy_*,
 * curl_multi_* and curl_slist_* through the loaded table, so callers read like plain libcurl code. */
#ifndef POSTERN_CORE_CURLX_H
#define POSTERN_CORE_CURLX_H

#include <curl/curl.h>
#include <stddef.h>

typedef struct curlx_fns {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
	CURLMcode (*multi_cleanup)(CURLM *);
	const char *(*multi_strerror)(CURLMcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} curlx_fns;

/* Loads libcurl.so.4 and runs curl_global_init, once per process (thread-safe). The table, or NULL with
 * why in err (not installed: "install the libcurl4 package"; an entry point missing; init failed). */
const curlx_fns *curlx_load(char *err, size_t errlen);
/* The table after a successful curlx_load (NULL before): for the macros below. */
extern const curlx_fns *curlx_tab;

#ifndef CURLX_NO_MACROS
#undef curl_easy_setopt /* curl.h's type-checking wrappers (gcc) */
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_easy_init curlx_tab->easy_init
#define curl_easy_setopt curlx_tab->easy_setopt
#define curl_easy_perform curlx_tab->easy_perform
#define curl_easy_getinfo curlx_tab->easy_getinfo
#define curl_easy_cleanup curlx_tab->easy_cleanup
#define curl_easy_strerror curlx_tab->easy_strerror
#define curl_multi_init curlx_tab->multi_init
#define curl_multi_setopt curlx_tab->multi_setopt
#define curl_multi_add_handle curlx_tab->multi_add_handle
#define curl_multi_remove_handle curlx_tab->multi_remove_handle
#define curl_multi_socket_action curlx_tab->multi_socket_action
#define curl_multi_info_read curlx_tab->multi_info_read
#define curl_multi_assign curlx_tab->multi_assign
#define curl_multi_cleanup curlx_tab->multi_cleanup
#define curl_multi_strerror curlx_tab->multi_strerror
#define curl_slist_append curlx_tab->slist_append
#define curl_slist_free_all curlx_tab->slist_free_all
#endif

#endif
