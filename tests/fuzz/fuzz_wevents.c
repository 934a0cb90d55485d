/* libFuzzer: a session's event handling on any event sequence. The input is split into lines; each line is
 * JSON (or not) fed as a live event, or, after a line "H", as history until a line "E". Every call the
 * handler queues is taken and answered; nothing is run twice; the queue and the sets stay within their caps;
 * the lease machine and the secret decoder get the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/wevents.h"
#include "worker/wproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wev *s = wev_new(1000);
	json_t *taken = json_object();
	size_t start = 0;
	bool hist = false;
	uint64_t now = 0;
	wpr_lease l;
	char *tok = NULL, *copy;

	if (!s || !taken)
		abort();
	wpr_lease_init(&l, 0);
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		const char *line = (const char *)data + start;
		size_t n = i - start;
		const char *why;
		start = i + 1;
		now += 100;
		if (n == 1 && line[0] == 'H') {
			wev_history_begin(s);
			hist = true;
			continue;
		}
		if (n == 1 && line[0] == 'E') {
			if (hist)
				wev_history_end(s, now);
			hist = false;
			continue;
		}
		json_t *ev = json_loadb(line, n, 0, NULL);
		if (hist)
			wev_history_event(s, ev, &why);
		else
			wev_event(s, ev, now, &why);
		json_decref(ev);
		wpr_lease_answer(&l, (long)(n % 600), line, n, now);
		for (json_t *c; (c = wev_take(s));) {
			const char *id = json_string_value(json_object_get(c, "id"));
			if (!id || json_object_get(taken, id))
				abort(); /* a call without an id, or one run twice */
			if (json_object_size(taken) < WEV_MAX_IDS / 2)
				json_object_set_new(taken, id, json_true());
			wev_answered(s, id);
			json_decref(c);
		}
		if (wev_outstanding(s) > WEV_MAX_QUEUE + WEV_MAX_IDS)
			abort();
		(void)wev_idle_due(s, false, now);
	}
	if (hist)
		wev_history_end(s, now);
	copy = malloc(size + 1);
	if (copy) {
		memcpy(copy, data, size);
		copy[size] = 0;
		if (wpr_secret_token(copy, &tok) == 0)
			free(tok);
		free(copy);
	}
	(void)wpr_lease_lost(&l, now);
	json_decref(taken);
	wev_free(s);
	return 0;
}
