/* `postern sandbox run|serve` and two hidden benchmark helpers (bench-warm, bench-idle). */
#include "sandbox/sandbox_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "core/cfg.h"
#include "core/log.h"
#include "sandbox/egress/egress_proxy.h"
#include "sandbox/engine/sbxopt.h"
#include "sandbox/tools/tool_worker.h"

#define PROXY_ADDR EGX_PROXY_ADDR
#define PROXY_PORT EGX_PROXY_PORT

static void usage(FILE *f)
{
	fprintf(f, "usage: postern sandbox run [options] -- CMD [ARG...]\n"
		   "       postern sandbox serve --stdio [options]   (MCP server with the sandbox tools)\n\n"
		   "run options:\n"
		   "  --workspace DIR     host directory mounted read-write at /workspace (default: an empty tmpfs)\n"
		   "  --scratch-workspace DIR\n"
		   "                      an empty workspace of its own disk (--disk), discarded at the end; as root an\n"
		   "                      ext4 image in an unlinked file in DIR, else a tmpfs (within --memory)\n"
		   "  --disk SIZE|none    workspace disk cap (default 10G): a scratch workspace's whole disk; a shared\n"
		   "                      --workspace's btrfs qgroup or project quota (root), refused where there is\n"
		   "                      none; none: a shared workspace's files are capped one by one only\n"
		   "  --image DIR         root of the read-only view (default /)\n"
		   "  --allow-domain D    allow egress to D through the sandbox's HTTP proxy (repeatable; *.example.com)\n"
		   "  --memory SIZE       memory limit (default 2G)\n"
		   "  --pids N            process limit (default 1024)\n"
		   "  --cpus N            CPU quota in CPUs, e.g. 1.5 (default none)\n"
		   "  --tmp SIZE          size of the /tmp tmpfs (default 1G)\n"
		   "  --timeout DUR       wall clock limit, e.g. 120s, 5m (default 120s)\n"
		   "  --output-cap SIZE   bytes of output kept, the tail (default 100K)\n"
		   "  --env K=V           set a variable (repeatable)\n"
		   "  --cgroup-parent DIR a cgroup v2 directory delegated to this user: the session's cgroup goes there\n"
		   "  --no-cgroup         use rlimits even when cgroups are available\n"
		   "  --json              print a JSON summary on stderr at the end\n"
		   "  --quiet             no log lines\n"
		   "exit status: the command's; 124 on timeout; 128+N when killed by signal N\n");
}

static int need(int argc, char **argv, int i, char *err, size_t errlen)
{
	if (i + 1 >= argc) {
		snprintf(err, errlen, "%s needs a value", argv[i]);
		return -EINVAL;
	}
	return 0;
}

int sandbox_cli_parse_run(int argc, char **argv, struct sandbox_run_opts *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof *o);
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		int64_t ms;
		uint64_t sz;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (a[0] != '-')
			break;
		if (!strcmp(a, "--no-cgroup")) {
			o->no_cgroup = true;
			continue;
		}
		if (!strcmp(a, "--json")) {
			o->json = true;
			continue;
		}
		if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
			o->quiet = true;
			continue;
		}
		if (need(argc, argv, i, err, errlen) < 0)
			return -EINVAL;
		const char *v = argv[++i];
		int rc = sbxopt_place(a, v, &o->workspace, &o->scratch, &o->disk_bytes, &o->image, err, errlen);
		if (rc < 0)
			return -EINVAL;
		if (rc > 0)
			continue;
		if (!strcmp(a, "--cgroup-parent")) {
			if (v[0] != '/') {
				snprintf(err, errlen, "--cgroup-parent %s: expected an absolute cgroup v2 directory", v);
				return -EINVAL;
			}
			o->cgroup_parent = v;
		} else if (!strcmp(a, "--allow-domain")) {
			if (o->n_allow >= SANDBOX_CLI_MAX_LIST || !*v) {
				snprintf(err, errlen, "--allow-domain: empty or more than %d", SANDBOX_CLI_MAX_LIST);
				return -EINVAL;
			}
			o->allow_domains[o->n_allow++] = v;
		} else if (!strcmp(a, "--env")) {
			if (o->n_env >= SANDBOX_CLI_MAX_LIST || !strchr(v, '=') || v[0] == '=') {
				snprintf(err, errlen, "--env %s: expected K=V", v);
				return -EINVAL;
			}
			o->env[o->n_env++] = v;
		} else if (!strcmp(a, "--memory") || !strcmp(a, "--tmp") || !strcmp(a, "--output-cap")) {
			if (cfg_parse_size(v, &sz) < 0 || sz < 4096 || sz > (1ull << 42)) {
				snprintf(err, errlen, "%s %s: expected a size like 512M or 2G", a, v);
				return -EINVAL;
			}
			if (!strcmp(a, "--memory"))
				o->memory_bytes = sz;
			else if (!strcmp(a, "--tmp"))
				o->tmp_bytes = sz;
			else if (sz <= (256u << 20))
				o->output_cap = sz;
			else {
				snprintf(err, errlen, "--output-cap: at most 256M");
				return -EINVAL;
			}
		} else if (!strcmp(a, "--pids")) {
			if (sbxopt_count(a, v, 1000000, &o->pids, err, errlen) < 0)
				return -EINVAL;
		} else if (!strcmp(a, "--cpus")) {
			if (sbxopt_cpus(v, &o->cpu_millis, err, errlen) < 0)
				return -EINVAL;
		} else if (!strcmp(a, "--timeout")) {
			if (cfg_parse_duration_ms(v, &ms) < 0 || ms < 1 || ms > 24ll * 3600 * 1000) {
				snprintf(err, errlen, "--timeout %s: expected a duration like 500ms, 30s, 5m", v);
				return -EINVAL;
			}
			o->timeout_ms = (unsigned)ms;
		} else {
			snprintf(err, errlen, "unknown option %s", a);
			return -EINVAL;
		}
	}
	if (i >= argc) {
		snprintf(err, errlen, "no command given (postern sandbox run [options] -- CMD...)");
		return -EINVAL;
	}
	o->argv = argv + i;
	return 0;
}

static void config_from(const struct sandbox_run_opts *o, sbx_config *c, const char *const *env_set)
{
	sbx_config_init(c);
	c->image = o->image;
	c->workspace = o->workspace;
	c->cgroup_parent = o->cgroup_parent;
	c->memory_bytes = o->memory_bytes;
	c->pids = o->pids;
	c->tmp_bytes = o->tmp_bytes;
	c->disk_bytes = o->disk_bytes;
	c->cpu_millis = o->cpu_millis;
	c->timeout_ms = o->timeout_ms;
	c->env_set = env_set;
	c->flags = (o->no_cgroup ? SBX_F_NO_CGROUP : 0) | (o->quiet ? SBX_F_QUIET : 0) | (o->scratch ? SBX_F_SCRATCH : 0);
}

static int run_main(int argc, char **argv)
{
	struct sandbox_run_opts o;
	char err[512];
	sbx *s = NULL;
	struct egx_run *eg = NULL;
	sbx_result r = { 0 };
	int status = 125;
	const char *env_set[SANDBOX_CLI_MAX_LIST + 8];
	size_t ne = 0;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (sandbox_cli_parse_run(argc, argv, &o, err, sizeof err) < 0) {
		fprintf(stderr, "postern sandbox run: %s\n", err);
		return 2;
	}
	if (o.quiet)
		log_set_level(LOG_WARN);
	if (o.n_allow) /* the proxy module decides the variables (and NO_PROXY) */
		for (const char *const *e = egx_proxy_env(); *e && ne < 8; e++)
			env_set[ne++] = *e;
	for (size_t i = 0; i < o.n_env; i++)
		env_set[ne++] = o.env[i];
	env_set[ne] = NULL;

	sbx_config c;
	config_from(&o, &c, env_set);
	if (!(s = sbx_new(&c, err, sizeof err))) {
		fprintf(stderr, "postern sandbox run: %s\n", err);
		return 125;
	}
	if (o.n_allow) {
		int lfd = -1, rc = sbx_netns_listen(s, PROXY_ADDR, PROXY_PORT, &lfd);
		if (rc < 0) {
			fprintf(stderr, "postern sandbox run: proxy socket: %s\n", strerror(-rc));
			goto out;
		}
		if (!(eg = egx_run_start(lfd, o.allow_domains, err, sizeof err))) {
			fprintf(stderr, "postern sandbox run: egress proxy: %s\n", err);
			goto out;
		}
	}
	sbx_cmd cmd = { .argv = (const char *const *)o.argv, .output_cap = o.output_cap, .last = true };
	int rc = sbx_run(s, &cmd, &r);
	if (rc < 0) {
		fprintf(stderr, "postern sandbox run: %s: %s\n", o.argv[0], strerror(-rc));
		goto out;
	}
	if (r.output_len && fwrite(r.output, 1, r.output_len, stdout) != r.output_len)
		fprintf(stderr, "postern sandbox run: write: %s\n", strerror(errno));
	fflush(stdout);
	status = sbx_result_status(&r);
	if (r.truncated)
		fprintf(stderr, "postern sandbox run: output truncated: %llu bytes written, the last %zu shown\n",
			(unsigned long long)r.output_total, r.output_len);
	if (r.timed_out)
		fprintf(stderr, "postern sandbox run: timed out after %u ms; process group killed\n",
			o.timeout_ms ? o.timeout_ms : SBX_DEFAULT_TIMEOUT_MS);
	if (r.oom_killed)
		fprintf(stderr, "postern sandbox run: memory limit reached (OOM kill)\n");
	if (r.pids_limited)
		fprintf(stderr, "postern sandbox run: process limit reached (fork refused)\n");
	if (o.json) {
		json_t *j = json_pack("{s:i, s:i, s:b, s:b, s:b, s:I, s:I, s:b, s:I, s:s, s:i}", "exit_code",
				      r.exit_code, "signal", r.signal, "timed_out", r.timed_out, "oom_killed",
				      r.oom_killed, "pids_limited", r.pids_limited, "output_total",
				      (json_int_t)r.output_total, "output_len", (json_int_t)r.output_len, "truncated",
				      r.truncated, "duration_us", (json_int_t)r.duration_us, "limits",
				      sbx_limits_describe(s), "init_pid", (int)sbx_init_pid(s));
		char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
		if (txt)
			fprintf(stderr, "%s\n", txt);
		free(txt);
		json_decref(j);
	}
out:
	sbx_result_free(&r);
	if (eg)
		egx_run_stop(eg);
	sbx_free(s);
	return status;
}

static double ts_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The same loop without a sandbox: fork, execve, waitpid. */
static int bench_plain(int n, const char *const *av)
{
	double *t = calloc((size_t)n, sizeof *t);
	extern char **environ;
	if (!t)
		return 1;
	for (int i = 0; i < n; i++) {
		double t0 = ts_us();
		pid_t p = fork();
		if (p == 0) {
			execve(av[0], (char *const *)av, environ);
			_exit(127);
		}
		int st;
		if (p < 0 || waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
			free(t);
			return 1;
		}
		t[i] = ts_us() - t0;
	}
	qsort(t, (size_t)n, sizeof *t, cmp_dbl);
	printf("{\"runs\":%d,\"median_us\":%.1f,\"p10_us\":%.1f,\"p90_us\":%.1f}\n", n, t[n / 2], t[n / 10],
	       t[n * 9 / 10]);
	free(t);
	return 0;
}

/* bench-warm N [--plain] [CMD...]: one sandbox, N runs of CMD (default /bin/true); prints the median in
 * µs. --plain: the same loop with fork/execve/waitpid and no sandbox, for the ratio. */
static int bench_warm(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	char err[512];
	static const char *const dflt[] = { "/bin/true", NULL };
	bool plain = argc > 2 && !strcmp(argv[2], "--plain");
	int first = plain ? 3 : 2;
	const char *const *av = argc > first ? (const char *const *)argv + first : dflt;
	if (n < 1 || n > 1000000)
		return 2;
	if (plain)
		return bench_plain(n, av);
	sbx_config c;
	sbx_config_init(&c);
	c.flags = SBX_F_QUIET;
	sbx *s = sbx_new(&c, err, sizeof err);
	if (!s) {
		fprintf(stderr, "bench-warm: %s\n", err);
		return 1;
	}
	double *t = calloc((size_t)n, sizeof *t);
	sbx_cmd cmd = { .argv = av };
	int rc = 0;
	for (int i = 0; t && i < n; i++) {
		sbx_result r;
		double t0 = ts_us();
		if (sbx_run(s, &cmd, &r) < 0 || r.exit_code != 0) {
			rc = 1;
			sbx_result_free(&r);
			break;
		}
		t[i] = ts_us() - t0;
		sbx_result_free(&r);
	}
	if (t && !rc) {
		qsort(t, (size_t)n, sizeof *t, cmp_dbl);
		printf("{\"runs\":%d,\"median_us\":%.1f,\"p10_us\":%.1f,\"p90_us\":%.1f}\n", n, t[n / 2], t[n / 10],
		       t[n * 9 / 10]);
	}
	free(t);
	sbx_free(s);
	return rc;
}

/* bench-cold N [--no-cgroup]: N times sbx_new + run /bin/true + sbx_free in this process (what a worker
 * pays per new session, without the binary's own start); prints the median in µs. */
static int bench_cold(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200;
	bool nocg = argc > 2 && !strcmp(argv[2], "--no-cgroup");
	char err[512];
	static const char *const av[] = { "/bin/true", NULL };
	if (n < 1 || n > 100000)
		return 2;
	double *t = calloc((size_t)n, sizeof *t);
	int rc = t ? 0 : 1;
	for (int i = 0; !rc && i < n; i++) {
		sbx_config c;
		sbx_config_init(&c);
		c.flags = SBX_F_QUIET | (nocg ? SBX_F_NO_CGROUP : 0);
		double t0 = ts_us();
		sbx *s = sbx_new(&c, err, sizeof err);
		sbx_cmd cmd = { .argv = av };
		sbx_result r;
		if (!s || sbx_run(s, &cmd, &r) < 0 || r.exit_code != 0) {
			fprintf(stderr, "bench-cold: %s\n", s ? "run failed" : err);
			rc = 1;
		} else {
			sbx_result_free(&r);
		}
		sbx_free(s);
		if (!rc)
			t[i] = ts_us() - t0;
	}
	if (!rc) {
		qsort(t, (size_t)n, sizeof *t, cmp_dbl);
		printf("{\"runs\":%d,\"median_us\":%.1f,\"p10_us\":%.1f,\"p90_us\":%.1f}\n", n, t[n / 2], t[n / 10],
		       t[n * 9 / 10]);
	}
	free(t);
	return rc;
}

/* Sum of Pss and Private_* of a process, in kB (from smaps_rollup). */
static void proc_mem(int pid, long *pss, long *priv)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
	FILE *f = fopen(path, "re");
	*pss = *priv = 0;
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		long v;
		if (sscanf(line, "Pss: %ld", &v) == 1)
			*pss += v;
		else if (sscanf(line, "Private_Clean: %ld", &v) == 1 || sscanf(line, "Private_Dirty: %ld", &v) == 1)
			*priv += v;
	}
	fclose(f);
}

static long self_rss_kb(void)
{
	long pss, priv;
	proc_mem(getpid(), &pss, &priv);
	return pss;
}

static long meminfo_kb(const char *key)
{
	char line[256];
	long v = 0;
	FILE *f = fopen("/proc/meminfo", "re");
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, key, strlen(key)))
			v = atol(line + strlen(key));
	if (f)
		fclose(f);
	return v;
}

/* Kernel-side memory: slab (namespaces, mounts, inodes), kernel stacks, page tables. */
static long kernel_kb(void)
{
	return meminfo_kb("Slab:") + meminfo_kb("KernelStack:") + meminfo_kb("PageTables:");
}

/* bench-idle N: N idle sessions; prints per-session host memory (init PSS / private, and our own growth). */
static int bench_idle(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	char err[512];
	if (n < 1 || n > 10000)
		return 2;
	sbx **v = calloc((size_t)n, sizeof *v);
	if (!v)
		return 1;
	long before = self_rss_kb(), avail0 = meminfo_kb("MemAvailable:"), kern0 = kernel_kb();
	double t0 = ts_us();
	int made = 0, rc = 0;
	for (; made < n; made++) {
		sbx_config c;
		sbx_config_init(&c);
		c.flags = SBX_F_QUIET;
		if (!(v[made] = sbx_new(&c, err, sizeof err))) {
			fprintf(stderr, "bench-idle: session %d: %s\n", made, err);
			rc = 1;
			break;
		}
	}
	double t1 = ts_us();
	long pss = 0, priv = 0;
	for (int i = 0; i < made; i++) {
		long a, b;
		proc_mem((int)sbx_init_pid(v[i]), &a, &b);
		pss += a;
		priv += b;
	}
	long after = self_rss_kb(), avail1 = meminfo_kb("MemAvailable:"), kern1 = kernel_kb();
	if (made)
		printf("{\"sessions\":%d,\"create_ms_each\":%.3f,\"init_pss_kb_each\":%.1f,\"init_private_kb_each\":%.1f,"
		       "\"host_process_growth_kb_each\":%.1f,\"kernel_kb_each\":%.1f,\"memavailable_drop_kb_each\":%.1f}\n",
		       made, (t1 - t0) / 1000.0 / made, (double)pss / made, (double)priv / made,
		       (double)(after - before) / made, (double)(kern1 - kern0) / made, (double)(avail0 - avail1) / made);
	for (int i = 0; i < made; i++)
		sbx_free(v[i]);
	free(v);
	return rc;
}

int sandbox_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "run"))
		return run_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve")) {
		return ssv_main(argc - 1, argv + 1);
	}
	if (!strcmp(argv[1], "tool-worker")) /* internal: started inside a sandbox by its init */
		return tworker_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench-warm"))
		return bench_warm(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench-cold"))
		return bench_cold(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench-idle"))
		return bench_idle(argc - 1, argv + 1);
	fprintf(stderr, "postern sandbox: unknown subcommand '%s' (run, serve)\n", argv[1]);
	return 2;
}
