/* Growable arrays: an element pointer, a count and a capacity in the owner's struct; arr_reserve makes room
 * for one more by doubling the capacity. The array stays typed at its owner (`l->v[l->n++] = x`). */
#ifndef POSTERN_ARR_H
#define POSTERN_ARR_H

#include <stddef.h>

/* Room for element n of the array *vp points to (vp: the address of the array pointer) of *cap elements of
 * size bytes: when n reaches *cap, doubles *cap (first when it is 0). 0, or -ENOMEM with the array and *cap
 * unchanged. */
int arr_reserve(void *vp, size_t n, size_t *cap, size_t first, size_t size);
/* The same, naming the array: ARR_RESERVE(l->v, l->n, l->cap, 8). */
#define ARR_RESERVE(v, n, cap, first) arr_reserve(&(v), (n), &(cap), (first), sizeof *(v))

#endif
