/* `postern sandbox serve --stdio` (see sandbox_serve.h). */
#include "sandbox/mcp/sandbox_serve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <linux/openat2.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/log.h"
#include "sandbox/egress/egress_proxy.h"
#include "sandbox/engine/sandbox.h"
#include "sandbox/engine/slot.h"
#include "sandbox/engine/sbxopt.h"
#include "sandbox/mcp/mcp_server.h"
#include "sandbox/tools/tool_worker.h"
#include "sandbox/tools/tools.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: postern sandbox serve --stdio [options]\n\nAn MCP server (JSON-RPC over stdin/stdout) with the tools");
	for (const struct tool_def *d = tool_table; d->name; d++)
		fprintf(f, "%s %s", d == tool_table ? "" : d[1].name ? "," : " and", d->name);
	fprintf(f,
		".\n"
		"One sandbox per session: created at the first tool call, removed at stdin EOF, SIGTERM or idle timeout.\n\n"
		"options:\n"
		"  --workspace DIR       host directory mounted read-write at /workspace (default: an empty tmpfs)\n"
		"  --scratch-workspace DIR\n"
		"                        an empty workspace of its own disk (--disk), discarded at the end; as root an\n"
		"                        ext4 image in an unlinked file in DIR, else a tmpfs (within --memory)\n"
		"  --disk SIZE|none      workspace disk cap (default 10G): a scratch workspace's whole disk; a shared\n"
		"                        --workspace's btrfs qgroup or project quota (root), refused where there is\n"
		"                        none; none: a shared workspace's files are capped one by one only\n"
		"  --image DIR           root of the read-only view (default /)\n"
		"  --allow-domain D      egress through the sandbox's HTTP proxy to D (repeatable): example.com,\n"
		"                        *.example.com (subdomains only), *, an IP or CIDR (also allows that address\n"
		"                        after resolution, e.g. 127.0.0.1), any of these with :PORT\n"
		"  --deny-domain D       refuse D even when allowed (checked first; repeatable)\n"
		"  --memory SIZE         memory limit (default 2G)\n"
		"  --pids N              process limit (default 1024)\n"
		"  --cpus N              CPU quota in CPUs (default none)\n"
		"  --tmp SIZE            size of the /tmp tmpfs (default 1G)\n"
		"  --timeout DUR         default bash command timeout (default 120s)\n"
		"  --idle-timeout DUR    end the session after this long without a message (default 30m)\n"
		"  --max-sandboxes N     concurrent sandboxes on this host for this user (default %d)\n"
		"  --slots-dir DIR       where the concurrency slots live (default $XDG_RUNTIME_DIR or /tmp)\n"
		"  --no-cgroup           use rlimits even when cgroups are available\n"
		"  --prestart            make the sandbox before reading the first message (a warm pool's child: the\n"
		"                        answer to initialize then means the sandbox is ready)\n"
		"  --log-level L         debug, info, warn, error (default info; logs go to stderr)\n"
		"  --option KEY=VALUE    a key of a proxy route's sandbox: options (memory=512M, allow_domains=D, ...)\n",
		SLOT_DEFAULT_MAX);
}

/* ---- one session ------------------------------------------------------------------------------------ */

struct ssv_session {
	struct ssv_opts o;
	sbx *s;
	egx *proxy;
	tool_session *tools;
	int slot;
	int cancel_fd; /* readable when the client cancels the running call; -1 = none */
};

static int spawn(ssv_session *ss, const sbx_cmd *c, void **proc, int *in_fd, int *out_fd)
{
	sbx_proc *p;
	int rc = sbx_spawn(ss->s, c, &p);
	if (rc < 0)
		return rc;
	*proc = p;
	*in_fd = sbx_proc_stdin_fd(p);
	*out_fd = sbx_proc_output_fd(p);
	return 0;
}

/* The image's bash, else its POSIX shell (a minimal image: busybox's ash), looked up in the image as the
 * sandbox will see it (RESOLVE_IN_ROOT: its own absolute symlinks, /bin -> usr/bin, stay inside). */
static bool image_has_bash(const ssv_session *ss)
{
	struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
	int root = open(ss->o.image ? ss->o.image : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int fd = root < 0 ? -1 : (int)syscall(SYS_openat2, root, "bin/bash", &how, sizeof how);
	if (fd >= 0)
		close(fd);
	if (root >= 0)
		close(root);
	return fd >= 0 || root < 0; /* an image we cannot open fails later with its own error */
}

static int sb_spawn(void *ud, void **proc, int *in_fd, int *out_fd)
{
	static const char *const bash[] = { "/bin/bash", "--noprofile", "--norc", NULL };
	static const char *const sh[] = { "/bin/sh", NULL };
	static const char *const env[] = { "PS1=", "PS2=", "TERM=dumb", NULL };
	sbx_cmd cmd = { .argv = image_has_bash(ud) ? bash : sh, .env = env, .stdin_pipe = true };
	return spawn(ud, &cmd, proc, in_fd, out_fd);
}

/* The file tools' worker: one of the session's own processes (see tools.h). */
static int sb_worker_spawn(void *ud, void **proc, int *in_fd, int *out_fd)
{
	static const char *const argv[] = { "postern-tool-worker", NULL };
	char err[200];
	/* The static worker embedded in us, from a sealed memfd: it needs nothing of the image. */
	int fd = tworker_image_fd(err, sizeof err);
	if (fd < 0) {
		log_warn("msg=\"cannot start the tool worker\" reason=\"%s\"", err);
		return fd;
	}
	sbx_cmd cmd = { .argv = argv, .stdin_pipe = true, .exec_fd = fd };
	return spawn(ud, &cmd, proc, in_fd, out_fd);
}

static void sb_kill(void *ud, void *proc)
{
	(void)ud;
	sbx_proc_kill(proc, SIGKILL);
}

static int sb_wait(void *ud, void *proc, int timeout_ms, int *ws)
{
	ssv_session *ss = ud;
	/* With no time to wait, the engine's wait does not read news: pump first. */
	if (timeout_ms <= 0)
		sbx_pump(ss->s);
	return sbx_proc_wait(proc, timeout_ms, ws);
}

static void sb_free(void *ud, void *proc)
{
	(void)ud;
	sbx_proc_free(proc);
}

static int sb_kill_all(void *ud)
{
	ssv_session *ss = ud;
	return sbx_kill_all(ss->s);
}

ssv_session *ssv_session_new(const struct ssv_opts *o, char *err, size_t errlen)
{
	ssv_session *ss = calloc(1, sizeof *ss);
	(void)err;
	(void)errlen;
	if (!ss)
		return NULL;
	ss->o = *o;
	ss->slot = -1;
	ss->cancel_fd = -1;
	return ss;
}

void ssv_set_cancel_fd(ssv_session *ss, int fd)
{
	ss->cancel_fd = fd;
}

static void teardown(ssv_session *ss)
{
	tool_session_free(ss->tools);
	ss->tools = NULL;
	egx_stop(ss->proxy);
	ss->proxy = NULL;
	if (ss->s) {
		sbx_free(ss->s);
		log_info("msg=\"sandbox session ended\"");
	}
	ss->s = NULL;
	slot_release(ss->slot);
	ss->slot = -1;
}

void ssv_session_free(ssv_session *ss)
{
	if (!ss)
		return;
	teardown(ss);
	free(ss);
}

int ssv_poll_fd(const ssv_session *ss)
{
	return ss && ss->s ? sbx_ctl_fd(ss->s) : -1;
}

void ssv_pump(ssv_session *ss)
{
	if (ss && ss->s)
		sbx_pump(ss->s);
}

static int make_sandbox(ssv_session *ss, char *err, size_t errlen)
{
	char dirbuf[512], e[400];
	const char *env[SSV_MAX_LIST + 8];
	size_t ne = 0;
	sbx_config c;
	egp_policy *pol = NULL;

	ss->slot = slot_acquire(ss->o.slots_dir ? ss->o.slots_dir : slot_default_dir(dirbuf, sizeof dirbuf),
				ss->o.max_sandboxes, e, sizeof e);
	if (ss->slot < 0) {
		snprintf(err, errlen, "%s", e);
		return ss->slot;
	}
	if (ss->o.n_allow)
		for (const char *const *p = egx_proxy_env(); *p; p++)
			env[ne++] = *p;
	env[ne] = NULL;
	sbx_config_init(&c);
	c.image = ss->o.image;
	c.budget_sessions = ss->o.max_sandboxes; /* unprivileged: the inotify budget is shared that many ways */
	c.workspace = ss->o.workspace;
	c.memory_bytes = ss->o.memory_bytes;
	c.pids = ss->o.pids;
	c.tmp_bytes = ss->o.tmp_bytes;
	c.disk_bytes = ss->o.disk_bytes;
	c.cpu_millis = ss->o.cpu_millis;
	c.timeout_ms = ss->o.timeout_ms;
	c.env_set = env;
	c.flags = (ss->o.no_cgroup ? SBX_F_NO_CGROUP : 0) | (ss->o.scratch ? SBX_F_SCRATCH : 0);
	ss->s = sbx_new(&c, e, sizeof e);
	if (!ss->s) {
		snprintf(err, errlen, "%s", e);
		goto fail;
	}
	if (ss->o.n_allow) {
		pol = egp_new();
		if (!pol) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < ss->o.n_allow; i++)
			egp_allow(pol, ss->o.allow[i], NULL, 0);
		for (size_t i = 0; i < ss->o.n_deny; i++)
			egp_deny(pol, ss->o.deny[i], NULL, 0);
		if (egx_start_for_sandbox(ss->s, pol, &ss->proxy, e, sizeof e) < 0) {
			snprintf(err, errlen, "egress proxy: %s", e);
			goto fail;
		}
	}
	struct tool_backend b = {
		.cwd = sbx_mount_point(ss->s),
		.default_timeout_ms = ss->o.timeout_ms,
		.shell_spawn = sb_spawn,
		.shell_kill = sb_kill,
		.shell_wait = sb_wait,
		.shell_free = sb_free,
		.kill_all = sb_kill_all,
		.worker_spawn = sb_worker_spawn,
		.cancel_fd = ss->cancel_fd >= 0 ? &ss->cancel_fd : NULL,
		.ud = ss,
	};
	ss->tools = tool_session_new(&b);
	if (!ss->tools) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	log_info("msg=\"sandbox session started\" init_pid=%d limits=\"%s\" egress=%s", (int)sbx_init_pid(ss->s),
		 sbx_limits_describe(ss->s), ss->o.n_allow ? EGX_PROXY_URL : "none");
	return 0;
fail:
	teardown(ss);
	return -EIO;
}

int ssv_call(void *session, const char *tool, json_t *args, json_t **result)
{
	ssv_session *ss = session;
	char err[600];

	if (!tool_find(tool))
		return -ENOENT;
	if (!ss->tools) {
		if (make_sandbox(ss, err, sizeof err) < 0) {
			char msg[700];
			int n = snprintf(msg, sizeof msg, "sandbox unavailable: %s", err);
			log_error("msg=\"sandbox unavailable\" reason=\"%s\"", err);
			*result = mcps_text_result(msg, (size_t)(n < (int)sizeof msg ? n : (int)sizeof msg - 1), true);
			return *result ? 0 : -ENOMEM;
		}
	}
	return tool_call(ss->tools, tool, args, result);
}

/* ---- tool calls on a worker thread -------------------------------------------------------------------
 * The stdio loop stays responsive while a tool runs: pings are answered and a notifications/cancelled
 * for the running call kills its command (through the tools' cancel fd). Calls run one at a time, in order. */

#define MAX_PENDING 8

struct job {
	json_t *id, *args;
	char tool[16];
	int rc;
	json_t *result;
	struct job *next;
};

struct runner {
	ssv_session *ss;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *q, *done, *running;
	size_t pending; /* queued + running + done but not yet answered */
	bool stop, started;
	int done_fd, cancel_fd;
};

static void job_free(struct job *j)
{
	json_decref(j->id);
	json_decref(j->args);
	json_decref(j->result);
	free(j);
}

static void append(struct job **list, struct job *j)
{
	j->next = NULL;
	while (*list)
		list = &(*list)->next;
	*list = j;
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	uint64_t one = 1, junk;

	for (;;) {
		struct job *j;
		pthread_mutex_lock(&r->mu);
		while (!r->q && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop) {
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		j = r->q;
		r->q = j->next;
		r->running = j;
		pthread_mutex_unlock(&r->mu);
		/* A cancel left over from a call that finished first must not hit this one. */
		while (read(r->cancel_fd, &junk, sizeof junk) > 0)
			;
		j->rc = ssv_call(r->ss, j->tool, j->args, &j->result);
		pthread_mutex_lock(&r->mu);
		r->running = NULL;
		append(&r->done, j);
		pthread_mutex_unlock(&r->mu);
		if (write(r->done_fd, &one, sizeof one) < 0)
			log_error("msg=\"cannot wake the stdio loop\" err=\"%s\"", strerror(errno));
	}
}

static int runner_start_call(void *ud, json_t *id, const char *tool, json_t *args)
{
	struct runner *r = ud;
	struct job *j;

	if (!tool_find(tool))
		return -ENOENT;
	pthread_mutex_lock(&r->mu);
	if (r->pending >= MAX_PENDING || !(j = calloc(1, sizeof *j))) {
		pthread_mutex_unlock(&r->mu);
		return -EBUSY;
	}
	j->id = id;
	j->args = args;
	snprintf(j->tool, sizeof j->tool, "%s", tool);
	append(&r->q, j);
	r->pending++;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return 0;
}

static void runner_cancel(void *ud, json_t *rid)
{
	struct runner *r = ud;
	uint64_t one = 1;
	char qid[80];
	char *ids = json_dumps(rid, JSON_ENCODE_ANY);

	pthread_mutex_lock(&r->mu);
	if (r->running && json_equal(r->running->id, rid)) {
		if (write(r->cancel_fd, &one, sizeof one) < 0)
			log_error("msg=\"cannot signal cancel\" err=\"%s\"", strerror(errno));
		log_info("msg=\"tool call cancelled by the client\" id=%s state=running", log_quote(ids, qid, sizeof qid));
	} else {
		for (struct job **p = &r->q; *p; p = &(*p)->next)
			if (json_equal((*p)->id, rid)) {
				struct job *j = *p;
				*p = j->next;
				job_free(j);
				r->pending--;
				log_info("msg=\"tool call cancelled by the client\" id=%s state=queued",
					 log_quote(ids, qid, sizeof qid));
				break;
			}
	}
	pthread_mutex_unlock(&r->mu);
	free(ids);
}

/* Cancels what runs, drops what waits, joins the thread. */
static void runner_stop(struct runner *r)
{
	uint64_t one = 1;
	if (!r->started)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	if (r->running && write(r->cancel_fd, &one, sizeof one) < 0)
		log_error("msg=\"cannot signal cancel\"");
	while (r->q) {
		struct job *j = r->q;
		r->q = j->next;
		job_free(j);
	}
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->th, NULL);
	while (r->done) {
		struct job *j = r->done;
		r->done = j->next;
		job_free(j);
	}
	r->started = false;
}

/* ---- stdio loop --------------------------------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int flush_out(mcps *m)
{
	size_t len;
	const char *out = mcps_output(m, &len);
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(STDOUT_FILENO, out + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { STDOUT_FILENO, POLLOUT, 0 };
			/* A client that stops reading for a minute is gone. */
			if (poll(&p, 1, 60000) <= 0)
				return -ETIMEDOUT;
			continue;
		}
		if (n <= 0)
			return -EPIPE;
		off += (size_t)n;
	}
	mcps_consume(m, len);
	return 0;
}

int ssv_main(int argc, char **argv)
{
	struct ssv_opts o;
	char err[512];
	json_t *tools = NULL;
	mcps *m = NULL;
	ssv_session *ss = NULL;
	struct runner r = { .done_fd = -1, .cancel_fd = -1 };
	sigset_t mask;
	int sfd = -1, rc = 0;
	uint64_t last;
	const char *why = "stdin closed";
	bool in_eof = false;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	if (ssv_opts_parse(argc, argv, &o, err, sizeof err) < 0) {
		fprintf(stderr, "postern sandbox serve: %s\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	r.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r.cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	tools = tool_list_json();
	ss = ssv_session_new(&o, err, sizeof err);
	if (ss)
		ssv_set_cancel_fd(ss, r.cancel_fd);
	r.ss = ss;
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	struct mcps_config mc = {
		.server_name = "postern-sandbox",
		.server_version = POSTERN_VERSION,
		.instructions = "Tools run inside an isolated sandbox; the workspace is at /workspace. Network access, "
				"if any, goes through the HTTP proxy in HTTP_PROXY/HTTPS_PROXY.",
		.tools = tools,
		.start = runner_start_call,
		.cancel = runner_cancel,
		.ud = &r,
	};
	m = tools && ss ? mcps_new(&mc) : NULL;
	/* Before the runner thread exists: nothing else touches the session yet. A failure is not fatal: the
	 * first call tries again and answers with the reason. */
	if (m && o.prestart && make_sandbox(ss, err, sizeof err) < 0)
		log_error("msg=\"sandbox prestart failed\" reason=\"%s\"", err);
	if (!m || sfd < 0 || r.done_fd < 0 || r.cancel_fd < 0 || pthread_create(&r.th, NULL, runner_main, &r) != 0) {
		fprintf(stderr, "postern sandbox serve: cannot start (out of memory, signalfd, eventfd or thread)\n");
		rc = 1;
		goto out;
	}
	r.started = true;
	log_info("msg=\"sandbox MCP server ready\" transport=stdio idle_timeout_ms=%llu max_sandboxes=%u allow_domains=%zu "
		 "prestarted=%s",
		 (unsigned long long)o.idle_ms, o.max_sandboxes, o.n_allow, ss->tools ? "true" : "false");
	last = mono_ms();
	for (;;) {
		size_t pending;
		pthread_mutex_lock(&r.mu);
		pending = r.pending;
		pthread_mutex_unlock(&r.mu);
		/* The engine's control socket is the worker's while a call runs; pump it only when idle. */
		struct pollfd p[4] = { { in_eof ? -1 : STDIN_FILENO, POLLIN, 0 },
				       { sfd, POLLIN, 0 },
				       { r.done_fd, POLLIN, 0 },
				       { pending ? -1 : ssv_poll_fd(ss), POLLIN, 0 } };
		uint64_t now = mono_ms(), deadline = last + o.idle_ms;
		char buf[65536];
		ssize_t n;
		int pr;

		if (in_eof && pending == 0)
			break;
		if (pending == 0 && now >= deadline) {
			why = "idle timeout";
			break;
		}
		pr = poll(p, 4, pending ? 60000 : (int)(deadline - now > 60000 ? 60000 : deadline - now));
		if (pr < 0 && errno != EINTR) {
			why = "poll failed";
			rc = 1;
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) > 0)
				log_info("msg=\"signal received\" signal=%u", si.ssi_signo);
			why = "signal";
			break;
		}
		if (p[2].revents & POLLIN) {
			uint64_t v;
			struct job *done;
			if (read(r.done_fd, &v, sizeof v) < 0 && errno != EAGAIN)
				log_error("msg=\"eventfd read failed\"");
			pthread_mutex_lock(&r.mu);
			done = r.done;
			r.done = NULL;
			pthread_mutex_unlock(&r.mu);
			while (done) {
				struct job *j = done;
				done = j->next;
				mcps_complete(m, j->id, j->rc, j->result);
				j->result = NULL;
				job_free(j);
				pthread_mutex_lock(&r.mu);
				r.pending--;
				pthread_mutex_unlock(&r.mu);
			}
			last = mono_ms();
			if (flush_out(m) < 0) {
				why = "stdout closed";
				break;
			}
		}
		if (p[3].fd >= 0 && (p[3].revents & (POLLIN | POLLHUP | POLLERR)))
			ssv_pump(ss);
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(STDIN_FILENO, buf, sizeof buf);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			/* Calls already sent are still answered (a client piping requests and closing stdin expects
			 * them); a client that wants out sooner sends SIGTERM, which cancels. */
			mcps_finish(m);
			if (flush_out(m) < 0) {
				why = "stdout closed";
				break;
			}
			in_eof = true;
			continue;
		}
		last = mono_ms();
		rc = mcps_feed(m, buf, (size_t)n);
		if (flush_out(m) < 0) {
			why = "stdout closed";
			rc = 0;
			break;
		}
		if (rc < 0) {
			why = "protocol output overflow";
			rc = 1;
			break;
		}
	}
	log_info("msg=\"sandbox MCP server stopping\" reason=\"%s\"", why);
out:
	runner_stop(&r);
	ssv_session_free(ss);
	mcps_free(m);
	json_decref(tools);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
	if (sfd >= 0)
		close(sfd);
	if (r.done_fd >= 0)
		close(r.done_fd);
	if (r.cancel_fd >= 0)
		close(r.cancel_fd);
	return rc;
}
