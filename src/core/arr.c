#include "core/arr.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int arr_reserve(void *vp, size_t n, size_t *cap, size_t first, size_t size)
{
	void *v, *nv;
	size_t nc;
	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : first;
	if (nc <= n || nc > SIZE_MAX / size)
		return -ENOMEM;
	/* Through memcpy: vp points at a T *, which a void ** may not alias. */
	memcpy(&v, vp, sizeof v);
	if (!(nv = realloc(v, nc * size)))
		return -ENOMEM;
	memcpy(vp, &nv, sizeof nv);
	*cap = nc;
	return 0;
}
