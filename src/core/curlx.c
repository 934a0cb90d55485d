/* The libcurl loader (see curlx.h). */
#define CURLX_NO_MACROS
#include "core/curlx.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "core/err.h"

const curlx_fns *curlx_tab;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static curlx_fns fns;
static const char *load_err;
static CURLcode init_rc = CURLE_FAILED_INIT;

#define SYM(field, name) (*(void **)&fns.field = dlsym(h, name))

static void load(void)
{
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		load_err = "libcurl.so.4 not found (install the libcurl4 package)";
		return;
	}
	if (!SYM(global_init, "curl_global_init") || !SYM(easy_init, "curl_easy_init") ||
	    !SYM(easy_setopt, "curl_easy_setopt") || !SYM(easy_perform, "curl_easy_perform") ||
	    !SYM(easy_getinfo, "curl_easy_getinfo") || !SYM(easy_cleanup, "curl_easy_cleanup") ||
	    !SYM(easy_strerror, "curl_easy_strerror") || !SYM(multi_init, "curl_multi_init") ||
	    !SYM(multi_setopt, "curl_multi_setopt") || !SYM(multi_add_handle, "curl_multi_add_handle") ||
	    !SYM(multi_remove_handle, "curl_multi_remove_handle") ||
	    !SYM(multi_socket_action, "curl_multi_socket_action") || !SYM(multi_info_read, "curl_multi_info_read") ||
	    !SYM(multi_assign, "curl_multi_assign") || !SYM(multi_cleanup, "curl_multi_cleanup") ||
	    !SYM(multi_strerror, "curl_multi_strerror") || !SYM(slist_append, "curl_slist_append") ||
	    !SYM(slist_free_all, "curl_slist_free_all")) {
		load_err = "libcurl.so.4 lacks an entry point postern needs (libcurl 7.62 or later is required)";
		return;
	}
	init_rc = fns.global_init(CURL_GLOBAL_DEFAULT);
	if (init_rc == CURLE_OK)
		curlx_tab = &fns;
}

const curlx_fns *curlx_load(char *err, size_t errlen)
{
	pthread_once(&once, load);
	if (load_err) {
		err_set(err, errlen, -ENOSYS, "%s", load_err);
		return NULL;
	}
	if (init_rc != CURLE_OK) {
		err_set(err, errlen, -EIO, "libcurl: %s", fns.easy_strerror(init_rc));
		return NULL;
	}
	return &fns;
}
