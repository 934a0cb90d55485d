/* Intrusive doubly linked lists. An element is on a list through two of its fields: next, and pprev, the
 * address of the pointer that points at it (the head, or the previous element's next). So it leaves its list
 * without knowing the head, and a NULL pprev means it is on none. The field names are arguments because one
 * element may be on two lists (a relay: its edge's and its connection's). Arguments are evaluated more than
 * once. Header only: there is nothing to compile. */
#ifndef POSTERN_LIST_H
#define POSTERN_LIST_H

/* Puts e first on the list whose head pointer is the lvalue head. */
#define LIST_PUSH(head, e, next, pprev)                                                                           \
	do {                                                                                                       \
		(e)->next = (head);                                                                                \
		if ((e)->next)                                                                                     \
			(e)->next->pprev = &(e)->next;                                                             \
		(head) = (e);                                                                                      \
		(e)->pprev = &(head);                                                                              \
	} while (0)

/* Takes e off its list, if it is on one. e->next is left as it was: a walk standing on e goes on. */
#define LIST_UNLINK(e, next, pprev)                                                                               \
	do {                                                                                                       \
		if ((e)->pprev) {                                                                                  \
			*(e)->pprev = (e)->next;                                                                   \
			if ((e)->next)                                                                             \
				(e)->next->pprev = (e)->pprev;                                                     \
			(e)->pprev = NULL;                                                                         \
		}                                                                                                  \
	} while (0)

#endif
