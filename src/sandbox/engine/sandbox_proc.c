/* Sandbox engine, host side: the control socket to the init, commands (run, spawn) and their processes,
 * and the init's other requests (kill all, count, listen in the network namespace). See sandbox.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/engine/sandbox.h"
#include "sandbox/engine/sandbox_int.h"
#include "sandbox/engine/sbx_proto.h"

/* ---- helpers ------------------------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int poll_ms(uint64_t deadline)
{
	uint64_t n = now_ms();
	if (deadline == UINT64_MAX)
		return -1; /* -1: poll's "no timeout" */
	return deadline <= n ? 0 : (int)(deadline - n > 60000 ? 60000 : deadline - n);
}

static struct sbxh_rec *rec_find(sbx *s, uint32_t id)
{
	for (int i = 0; i < SBXH_MAX_RECS; i++)
		if (s->recs[i].used && s->recs[i].id == id)
			return &s->recs[i];
	return NULL;
}

static struct sbxh_rec *rec_new(sbx *s)
{
	for (int i = 0; i < SBXH_MAX_RECS; i++)
		if (!s->recs[i].used) {
			memset(&s->recs[i], 0, sizeof s->recs[i]);
			s->recs[i].used = true;
			s->recs[i].id = ++s->next_id;
			return &s->recs[i];
		}
	return NULL;
}

/* Handles one message from the init. 1 handled, 0 EOF (the init died), -EAGAIN nothing pending. */
static int handle_one(sbx *s, int flags)
{
	struct sbxp_hdr h;
	int fds[2], nfds = 2;
	int r = sbxp_recv(s->ctl, &h, s->buf, fds, &nfds, flags);
	if (r <= 0)
		return r == -EBADMSG ? 1 : r;
	struct sbxh_rec *rc = rec_find(s, h.id);
	switch (h.type) {
	case SBXP_STARTED:
		if (rc)
			rc->started = true, rc->pid = h.a;
		break;
	case SBXP_EXEC_ERR:
		if (rc)
			rc->failed = true, rc->err = h.a, rc->exited = true;
		break;
	case SBXP_EXITED:
		if (rc)
			rc->exited = true, rc->wstatus = h.a, rc->pid = h.b;
		break;
	case SBXP_LISTEN_R:
		s->got_listen = true;
		s->listen_rc = h.a;
		s->listen_fd = nfds > 0 ? fds[0] : -1;
		if (nfds > 0)
			nfds--, memmove(fds, fds + 1, sizeof(int));
		break;
	case SBXP_KILLALL_R:
		s->got_killall = true;
		s->killall_n = h.a;
		break;
	case SBXP_NPROCS_R:
		s->got_nprocs = true;
		s->nprocs_n = h.a;
		break;
	default:
		break;
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return 1;
}

int sbx_pump(sbx *s)
{
	int r;
	while ((r = handle_one(s, MSG_DONTWAIT)) == 1)
		;
	return r == -EAGAIN ? 0 : r == 0 ? -EPIPE : r;
}

int sbx_ctl_fd(const sbx *s)
{
	return s->ctl;
}

/* Waits until *flag or the deadline; -ETIMEDOUT, -EPIPE when the init is gone. */
static int wait_flag(sbx *s, const bool *flag, uint64_t deadline)
{
	while (!*flag) {
		struct pollfd pf = { s->ctl, POLLIN, 0 };
		int t = poll_ms(deadline);
		if (t == 0)
			return -ETIMEDOUT;
		int pr = poll(&pf, 1, t);
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr > 0) {
			int r = sbx_pump(s);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ---- commands ------------------------------------------------------------------------------------------ */

static int send_exec(sbx *s, const sbx_cmd *cmd, struct sbxh_rec *r, int out_w, int in_r, bool run)
{
	char *p = s->buf, *end = s->buf + SBXP_MAX_PAYLOAD;
	uint32_t argc = 0, envc = 0;
	if (!cmd->argv || !cmd->argv[0])
		return -EINVAL;
	while (cmd->argv[argc])
		argc++;
	while (cmd->env && cmd->env[envc])
		envc++;
	if (argc > SBX_MAX_ARGS || envc > SBX_MAX_ENV)
		return -E2BIG;
	memcpy(p, &argc, 4);
	memcpy(p + 4, &envc, 4);
	p += 8;
	const char *cwd = cmd->cwd ? cmd->cwd : s->mount_point;
	size_t l = strlen(cwd) + 1;
	if (l > (size_t)(end - p))
		return -E2BIG;
	memcpy(p, cwd, l);
	p += l;
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < (pass ? envc : argc); i++) {
			const char *a = pass ? cmd->env[i] : cmd->argv[i];
			l = strlen(a) + 1;
			if (l > (size_t)(end - p))
				return -E2BIG;
			memcpy(p, a, l);
			p += l;
		}
	int fds[3] = { out_w, in_r, -1 }, nfds = in_r >= 0 ? 2 : 1;
	if (cmd->exec_fd > 2)
		fds[nfds++] = cmd->exec_fd;
	else if (cmd->exec_fd)
		return -EBADF;
	int fl = (in_r >= 0 ? SBXP_EXEC_STDIN : 0) | (cmd->exec_fd ? SBXP_EXEC_FD : 0) |
		 (run ? SBXP_EXEC_NOSTART : 0) | (run && cmd->last ? SBXP_EXEC_LAST : 0);
	return sbxp_send(s->ctl, SBXP_EXEC, r->id, fl, 0, s->buf, (uint32_t)(p - s->buf), fds, nfds);
}

/* Tail-keeping output buffer. */
struct tail {
	char *buf;
	size_t cap, pos;
	uint64_t total;
};

static ssize_t tail_read(struct tail *t, int fd)
{
	struct iovec iov[2];
	size_t at = t->pos % t->cap;
	iov[0].iov_base = t->buf + at;
	iov[0].iov_len = t->cap - at;
	iov[1].iov_base = t->buf;
	iov[1].iov_len = at;
	ssize_t n = readv(fd, iov, at ? 2 : 1);
	if (n > 0) {
		t->pos += (size_t)n;
		t->total += (uint64_t)n;
	}
	return n;
}

int sbx_run(sbx *s, const sbx_cmd *cmd, sbx_result *res)
{
	int out[2] = { -1, -1 }, rc = 0;
	struct tail t = { 0 };
	struct sbxh_rec *r = NULL;
	memset(res, 0, sizeof *res);
	res->exit_code = -1;
	t.cap = cmd->output_cap ? cmd->output_cap : SBX_DEFAULT_OUTPUT_CAP;
	if (!(t.buf = malloc(t.cap)) || !(r = rec_new(s))) {
		rc = -ENOMEM;
		goto out;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	uint64_t oom0, pids0, t0 = now_us();
	cgr_events(s->cg, &oom0, &pids0);
	rc = send_exec(s, cmd, r, out[1], -1, true);
	close(out[1]);
	out[1] = -1;
	if (rc < 0)
		goto out;
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	unsigned tmo = cmd->timeout_ms ? cmd->timeout_ms : s->timeout_ms;
	uint64_t deadline = now_ms() + tmo, hard = UINT64_MAX, drain = UINT64_MAX;
	bool eof = false, init_gone = false;
	for (;;) {
		if (r->exited && (eof || now_ms() >= drain))
			break;
		if (!r->exited && !res->timed_out && now_ms() >= deadline) {
			res->timed_out = true;
			(void)sbxp_send(s->ctl, SBXP_KILL, r->id, SIGKILL, 0, NULL, 0, NULL, 0);
			hard = now_ms() + SBXH_KILL_GRACE_MS;
		}
		if (now_ms() >= hard) {
			rc = -ETIMEDOUT; /* the init does not answer */
			goto out;
		}
		struct pollfd pf[2] = { { init_gone ? -1 : s->ctl, POLLIN, 0 }, { eof ? -1 : out[0], POLLIN, 0 } };
		uint64_t next = r->exited ? drain : res->timed_out ? hard : deadline;
		int pr = poll(pf, 2, poll_ms(next));
		if (pr < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
		if (pf[1].revents) {
			/* Read until the pipe is empty: 1 GB of output must not wait on the poll loop. */
			for (int i = 0; i < 64; i++) {
				ssize_t n = tail_read(&t, out[0]);
				if (n == 0) {
					eof = true;
					break;
				}
				if (n < 0)
					break;
			}
		}
		if (pf[0].revents) {
			int hr = sbx_pump(s);
			if (hr == -EPIPE && r->exited && cmd->last)
				init_gone = true; /* it ended with its last command, as asked */
			else if (hr < 0) {
				rc = hr;
				goto out;
			}
			if (r->exited && !eof && drain == UINT64_MAX)
				drain = now_ms() + 100; /* a background process may hold the pipe: don't wait for it */
		}
	}
	if (r->failed) {
		rc = -r->err;
		goto out;
	}
	res->duration_us = now_us() - t0;
	if (WIFEXITED(r->wstatus))
		res->exit_code = WEXITSTATUS(r->wstatus);
	else if (WIFSIGNALED(r->wstatus))
		res->signal = WTERMSIG(r->wstatus);
	uint64_t oom1, pids1;
	cgr_events(s->cg, &oom1, &pids1);
	res->oom_killed = oom1 > oom0;
	res->pids_limited = pids1 > pids0;
	res->output_total = t.total;
	res->truncated = t.total > t.cap;
	size_t keep = t.total < t.cap ? (size_t)t.total : t.cap;
	if (!(res->output = malloc(keep + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	size_t start = (t.pos - keep) % t.cap;
	size_t first = keep < t.cap - start ? keep : t.cap - start;
	memcpy(res->output, t.buf + start, first);
	memcpy(res->output + first, t.buf, keep - first);
	res->output[keep] = 0;
	res->output_len = keep;
out:
	if (rc < 0 && r && !r->exited && r->id)
		(void)sbxp_send(s->ctl, SBXP_KILL, r->id, SIGKILL, 0, NULL, 0, NULL, 0);
	if (r)
		r->used = false;
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
	free(t.buf);
	return rc;
}

void sbx_result_free(sbx_result *r)
{
	if (r) {
		free(r->output);
		r->output = NULL;
	}
}

int sbx_result_status(const sbx_result *r)
{
	if (r->timed_out)
		return 124;
	if (r->signal)
		return 128 + r->signal;
	return r->exit_code;
}

int sbx_spawn(sbx *s, const sbx_cmd *cmd, sbx_proc **outp)
{
	int out[2] = { -1, -1 }, in[2] = { -1, -1 }, rc = 0;
	sbx_proc *p = calloc(1, sizeof *p);
	struct sbxh_rec *r = NULL;
	if (!p || !(r = rec_new(s))) {
		free(p);
		return -ENOMEM;
	}
	p->in_fd = p->out_fd = -1;
	if (pipe2(out, O_CLOEXEC) < 0 || (cmd->stdin_pipe && pipe2(in, O_CLOEXEC) < 0)) {
		rc = -errno;
		goto fail;
	}
	rc = send_exec(s, cmd, r, out[1], in[0], false);
	close(out[1]);
	if (in[0] >= 0)
		close(in[0]);
	out[1] = in[0] = -1;
	if (rc < 0)
		goto fail;
	uint64_t deadline = now_ms() + 10000;
	while (!r->started && !r->failed) {
		struct pollfd pf = { s->ctl, POLLIN, 0 };
		int t = poll_ms(deadline);
		if (t == 0) {
			rc = -ETIMEDOUT;
			goto fail;
		}
		int pr = poll(&pf, 1, t);
		if (pr < 0 && errno != EINTR) {
			rc = -errno;
			goto fail;
		}
		if (pr > 0 && (rc = sbx_pump(s)) < 0)
			goto fail;
	}
	if (r->failed) {
		rc = -r->err;
		goto fail;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	p->s = s;
	p->id = r->id;
	p->pid = r->pid;
	p->out_fd = out[0];
	p->in_fd = in[1];
	*outp = p;
	return 0;
fail:
	if (r)
		r->used = false;
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (in[i] >= 0)
			close(in[i]);
	}
	free(p);
	return rc;
}

int sbx_proc_output_fd(const sbx_proc *p)
{
	return p->out_fd;
}

int sbx_proc_stdin_fd(const sbx_proc *p)
{
	return p->in_fd;
}

void sbx_proc_close_stdin(sbx_proc *p)
{
	if (p->in_fd >= 0)
		close(p->in_fd);
	p->in_fd = -1;
}

pid_t sbx_proc_pid(const sbx_proc *p)
{
	return p->pid;
}

int sbx_proc_kill(sbx_proc *p, int sig)
{
	if (p->exited)
		return -ESRCH;
	return sbxp_send(p->s->ctl, SBXP_KILL, p->id, sig, 0, NULL, 0, NULL, 0);
}

int sbx_proc_wait(sbx_proc *p, int timeout_ms, int *wstatus)
{
	if (!p->exited) {
		struct sbxh_rec *r = rec_find(p->s, p->id);
		if (!r)
			return -ESRCH;
		int rc = wait_flag(p->s, &r->exited, now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0));
		if (rc == -ETIMEDOUT)
			return 0;
		if (rc < 0)
			return rc;
		p->exited = true;
		p->wstatus = r->wstatus;
		r->used = false;
	}
	if (wstatus)
		*wstatus = p->wstatus;
	return 1;
}

void sbx_proc_free(sbx_proc *p)
{
	if (!p)
		return;
	if (!p->exited) {
		(void)sbx_proc_kill(p, SIGKILL);
		(void)sbx_proc_wait(p, SBXH_KILL_GRACE_MS, NULL);
		struct sbxh_rec *r = rec_find(p->s, p->id);
		if (r)
			r->used = false;
	}
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	free(p);
}

/* Sends a command without arguments and waits for its answer, one count: *got and *n. */
static int ask_count(sbx *s, uint32_t type, bool *got, const int *n)
{
	*got = false;
	int rc = sbxp_send(s->ctl, type, 0, 0, 0, NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	rc = wait_flag(s, got, now_ms() + SBXH_KILL_GRACE_MS);
	return rc < 0 ? rc : *n;
}

int sbx_kill_all(sbx *s)
{
	return ask_count(s, SBXP_KILLALL, &s->got_killall, &s->killall_n);
}

int sbx_nprocs(sbx *s)
{
	return ask_count(s, SBXP_NPROCS, &s->got_nprocs, &s->nprocs_n);
}

int sbx_netns_listen(sbx *s, const char *addr, int port, int *fd_out)
{
	if (!addr || port < 0 || port > 65535 || strlen(addr) > 64)
		return -EINVAL;
	s->got_listen = false;
	int rc = sbxp_send(s->ctl, SBXP_LISTEN, 0, port, 0, addr, (uint32_t)strlen(addr), NULL, 0);
	if (rc < 0)
		return rc;
	rc = wait_flag(s, &s->got_listen, now_ms() + SBXH_KILL_GRACE_MS);
	if (rc < 0)
		return rc;
	if (s->listen_rc < 0 || s->listen_fd < 0)
		return s->listen_rc < 0 ? s->listen_rc : -EIO;
	*fd_out = s->listen_fd;
	s->listen_fd = -1;
	return 0;
}
