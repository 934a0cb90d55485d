/* `postern agent`: an agent loop against a control plane. It creates a session, then either follows a plan
 * file (no key: SCRIPTED, said loudly) or asks the Messages API (ANTHROPIC_API_KEY) which tools to call;
 * sandbox tools go to the session's worker as agent.tool_use events, MCP tools are called here over
 * Streamable HTTP through a postern edge. SIGINT at any step terminates the session and exits. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_int.h"
#include "agent/atty.h"
#include "agent/ahttp.h"
#include "agent/aplan.h"
#include "commands.h"
#include "core/cfg.h"
#include "core/err.h"
#include "core/secfile.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: postern agent --control URL --api-key-file FILE --env ENV_ID [options] \"task...\"\n\n"
		"  --control URL          the control plane (postern control, or https://api.anthropic.com)\n"
		"  --control-ca FILE      the CA an https:// --control's certificate is checked against (default: the system's)\n"
		"  --api-key-file FILE    its API key (mode 0600, one line)\n"
		"  --env ENV_ID           the self-hosted environment whose worker runs the sandbox tools\n"
		"  --plan FILE            the steps to follow without a model (YAML: steps: [{name, mcp, tool, args, expect}])\n"
		"  --mcp NAME=URL         an MCP server (Streamable HTTP, e.g. https://NAME.TUNNEL:PORT/mcp); repeatable\n"
		"  --ca-file FILE         the customer CA the MCP servers' certificates are checked against\n"
		"  --connect-addr ADDR    connect MCP servers at ADDR (same port), keeping the URL's name for SNI\n"
		"  --permission TOOL=allow|ask  per tool (ask: prompt on the terminal); repeatable, * for all\n"
		"  --tool-timeout DUR     per tool call (default 120s)\n"
		"  --model M              the Messages API model (default claude-sonnet-4-5)\n"
		"  --json                 print the session's events as JSON lines on stdout (transcript on stderr)\n\n"
		"With ANTHROPIC_API_KEY set the model chooses the tools (ANTHROPIC_BASE_URL honoured); without it the\n"
		"plan file is followed and the run says it is SCRIPTED.\n");
}

static volatile sig_atomic_t sigs;

static void on_signal(int sig)
{
	(void)sig;
	ahttp_cancel = 1;
	if (++sigs > 2)
		_exit(130);
}

static int read_key(const char *path, char *key, size_t keylen, char *err, size_t errlen)
{
	char why[600];
	sfile f;
	int rc = sfile_read(path, keylen - 1, 0, &f, why, sizeof why);
	if (rc < 0)
		return err_set(err, errlen, rc, "--api-key-file: %s", why);
	if (!sfile_first_line(&f))
		rc = err_set(err, errlen, -EINVAL, "--api-key-file %s: the first line is empty", path);
	else
		memcpy(key, f.data, f.len + 1);
	sfile_free(&f);
	return rc;
}

static void tap(void *arg, json_t *ev)
{
	(void)arg;
	char *s = json_dumps(ev, JSON_COMPACT);
	if (s) {
		printf("%s\n", s);
		fflush(stdout);
	}
	free(s);
}

static const char *step_where(const aplan_step *s)
{
	return s->mcp ? s->mcp : "sandbox";
}

/* The plan, step by step; every result's text kept for ${NAME.output}. */
static int run_plan(agi *a, aplan *p, char *err, size_t errlen)
{
	int rc = 0;
	json_t *outputs = json_object();
	for (size_t i = 0; i < p->n && !rc; i++) {
		aplan_step *s = &p->steps[i];
		agi_result r;
		if (ahttp_cancel) {
			rc = -ECANCELED;
			snprintf(err, errlen, "interrupted before step %zu (%s)", i + 1, s->name);
			break;
		}
		json_t *in = aplan_resolve(s->args, outputs, err, errlen);
		if (!in) {
			fprintf(a->tr, "[%zu/%zu] %s  %s.%s  FAILED: %s\n", i + 1, p->n, s->name, step_where(s), s->tool, err);
			rc = -EINVAL;
			break;
		}
		fprintf(a->tr, "[%zu/%zu] %-14s %s.%s ... ", i + 1, p->n, s->name, step_where(s), s->tool);
		fflush(a->tr);
		rc = agi_tool(a, s->mcp, s->tool, in, &r, err, errlen);
		json_decref(in);
		a->steps++;
		if (rc) {
			fprintf(a->tr, "%s after %.0f ms: %s\n", rc == -ETIMEDOUT ? "TIMED OUT" : rc == -ECANCELED ? "INTERRUPTED" : "FAILED",
				r.ms, err);
			break;
		}
		char *text = agi_text(r.content);
		const char *verdict = r.is_error ? (s->expect_error ? "error (expected)" : "TOOL ERROR") : s->expect_error ? "UNEXPECTED SUCCESS" : "ok";
		fprintf(a->tr, "%s (%.1f ms)\n", verdict, r.ms);
		agi_excerpt(a, text ? text : "", 6);
		json_object_set_new(outputs, s->name, json_string(text ? text : ""));
		if (r.is_error != s->expect_error) {
			snprintf(err, errlen, "step %zu (%s): %s", i + 1, s->name,
				 r.is_error ? "the tool answered an error" : "the step was expected to fail and did not");
			rc = -EREMOTEIO;
		}
		free(text);
		json_decref(r.content);
	}
	json_decref(outputs);
	return rc;
}

static int parse_perm(agi *a, const char *v, char *err, size_t errlen)
{
	const char *eq = strchr(v, '=');
	if (!eq || eq == v || (size_t)(eq - v) >= sizeof a->perms[0].tool || (strcmp(eq + 1, "allow") && strcmp(eq + 1, "ask"))) {
		snprintf(err, errlen, "--permission %s: expected TOOL=allow or TOOL=ask", v);
		return -EINVAL;
	}
	if (a->nperms == AGI_MAX_PERMS) {
		snprintf(err, errlen, "--permission: at most %d", AGI_MAX_PERMS);
		return -E2BIG;
	}
	agi_perm *p = &a->perms[a->nperms++];
	snprintf(p->tool, sizeof p->tool, "%.*s", (int)(eq - v), v);
	p->ask = !strcmp(eq + 1, "ask");
	return 0;
}

int agent_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", 1, 0, 'c' }, { "api-key-file", 1, 0, 'k' }, { "env", 1, 0, 'e' }, { "plan", 1, 0, 'p' },
		{ "mcp", 1, 0, 'm' }, { "ca-file", 1, 0, 'C' }, { "connect-addr", 1, 0, 'A' }, { "permission", 1, 0, 'P' },
		{ "tool-timeout", 1, 0, 'T' }, { "control-ca", 1, 0, 'R' }, { "model", 1, 0, 'M' }, { "json", 0, 0, 'j' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
	};
	const char *control = NULL, *keyfile = NULL, *env = NULL, *plan_path = NULL, *ca = NULL, *caddr = NULL, *control_ca = NULL;
	const char *mcp_args[AGI_MAX_MCP];
	size_t nmcp_args = 0;
	char err[1024] = "", key[600] = "";
	int rc = 0, c, exit_code = 1;
	aplan *plan = NULL;
	agi a = { .tool_timeout_ms = 120000, .model = "claude-sonnet-4-5", .tr = stdout };
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int64_t ms;
		switch (c) {
		case 'c': control = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'e': env = optarg; break;
		case 'p': plan_path = optarg; break;
		case 'C': ca = optarg; break;
		case 'R': control_ca = optarg; break;
		case 'A': caddr = optarg; break;
		case 'M': a.model = optarg; break;
		case 'j': a.json = true; break;
		case 'm':
			if (nmcp_args == AGI_MAX_MCP) {
				fprintf(stderr, "postern agent: at most %d --mcp servers\n", AGI_MAX_MCP);
				return 2;
			}
			mcp_args[nmcp_args++] = optarg;
			break;
		case 'P':
			if (parse_perm(&a, optarg, err, sizeof err)) {
				fprintf(stderr, "postern agent: %s\n", err);
				return 2;
			}
			break;
		case 'T':
			if (cfg_parse_duration_ms(optarg, &ms) || ms < 100 || ms > 3600000) {
				fprintf(stderr, "postern agent: --tool-timeout %s: a duration from 100ms to 1h (e.g. 30s)\n", optarg);
				return 2;
			}
			a.tool_timeout_ms = (long)ms;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!control || !keyfile || !env || optind != argc - 1) {
		fprintf(stderr, "postern agent: %s\n", optind != argc - 1 ? "one task argument is required (quote it)"
									  : "--control, --api-key-file and --env are required");
		usage(stderr);
		return 2;
	}
	if (control_ca && access(control_ca, R_OK)) {
		fprintf(stderr, "postern agent: --control-ca %s: %s\n", control_ca, strerror(errno));
		return 2;
	}
	a.task = argv[optind];
	const char *model_key = getenv("ANTHROPIC_API_KEY");
	if (model_key && !*model_key)
		model_key = NULL;
	if (!model_key && !plan_path) {
		fprintf(stderr, "postern agent: no ANTHROPIC_API_KEY and no --plan: give a plan file to follow, or a key for the model\n");
		return 2;
	}
	if (a.json)
		a.tr = stderr;
	if (!model_key && (rc = aplan_load(plan_path, &plan, err, sizeof err))) {
		fprintf(stderr, "postern agent: %s\n", err);
		return 2;
	}
	/* Peers' text reaches the terminal through the guard; if it cannot be made, plain is no worse than
	 * refusing to run. */
	FILE *guarded = atty_open(a.tr);
	if (guarded)
		a.tr = guarded;
	if ((rc = read_key(keyfile, key, sizeof key, err, sizeof err)))
		goto out;
	for (size_t i = 0; i < nmcp_args; i++) {
		const char *eq = strchr(mcp_args[i], '=');
		char name[64];
		if (!eq || eq == mcp_args[i] || (size_t)(eq - mcp_args[i]) >= sizeof name) {
			snprintf(err, sizeof err, "--mcp %s: expected NAME=URL", mcp_args[i]);
			rc = -EINVAL;
			goto out;
		}
		snprintf(name, sizeof name, "%.*s", (int)(eq - mcp_args[i]), mcp_args[i]);
		if (!(a.mcp[a.nmcp] = amcp_new(name, eq + 1, ca, caddr, err, sizeof err))) {
			rc = -EINVAL;
			goto out;
		}
		a.nmcp++;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	a.started_ms = agi_now_ms();
	if (model_key)
		fprintf(a.tr, "postern agent: model %s chooses the tools (Messages API)\n", a.model);
	else
		fprintf(a.tr, "postern agent: *** SCRIPTED RUN: following %s step by step; NO MODEL is involved "
			      "(set ANTHROPIC_API_KEY to let a model choose) ***\n", plan_path);
	if (!(a.ctl = actl_new(control, key, control_ca, err, sizeof err))) {
		rc = -EINVAL;
		goto out;
	}
	explicit_bzero(key, sizeof key);
	if (a.json)
		actl_set_tap(a.ctl, tap, NULL);
	for (size_t i = 0; i < a.nmcp && !rc; i++) {
		long t0 = agi_now_ms();
		if (!(rc = amcp_open(a.mcp[i], 15000, err, sizeof err)) &&
		    !(rc = amcp_list(a.mcp[i], 15000, &a.mcp_tools[i], err, sizeof err)))
			fprintf(a.tr, "mcp %s: connected, %zu tools (%ld ms)\n", amcp_name(a.mcp[i]),
				json_array_size(a.mcp_tools[i]), agi_now_ms() - t0);
	}
	if (rc)
		goto out;
	if ((rc = actl_session_create(a.ctl, env, a.task, err, sizeof err)))
		goto out;
	fprintf(a.tr, "session %s created on %s (environment %s)\n", actl_session(a.ctl), control, env);
	json_t *msg = json_pack("{s:s,s:[{s:s,s:s}]}", "type", "user.message", "content", "type", "text", "text", a.task);
	rc = actl_post(a.ctl, msg, NULL, err, sizeof err);
	json_decref(msg);
	if (rc)
		goto out;
	fflush(a.tr);
	rc = model_key ? agi_model_run(&a, model_key, err, sizeof err) : run_plan(&a, plan, err, sizeof err);
	if (!rc) {
		json_t *idle = json_pack("{s:s,s:{s:s}}", "type", "session.status_idle", "stop_reason", "type", "end_turn");
		char e2[256];
		if (actl_post(a.ctl, idle, NULL, e2, sizeof e2))
			fprintf(a.tr, "warning: %s\n", e2);
		json_decref(idle);
	}
out:
	explicit_bzero(key, sizeof key);
	if (a.ctl && actl_session(a.ctl)[0]) {
		/* Ours to end whatever happened: the worker then stops the sandbox and removes its workspace. */
		char e2[256];
		int cancelled = ahttp_cancel;
		ahttp_cancel = 0;
		if (actl_terminate(a.ctl, e2, sizeof e2))
			fprintf(a.tr, "warning: could not terminate session %s: %s\n", actl_session(a.ctl), e2);
		else
			fprintf(a.tr, "session %s terminated\n", actl_session(a.ctl));
		ahttp_cancel = cancelled;
	}
	if (ahttp_cancel) {
		fprintf(a.tr, "postern agent: interrupted%s%s\n", err[0] ? ": " : "", err);
		exit_code = 130;
	} else if (rc) {
		fprintf(a.tr, "postern agent: stopped: %s\n", err);
	} else {
		fprintf(a.tr, "done: %u steps in %.2f s (%u MCP calls %.0f ms, %u sandbox calls %.0f ms)\n", a.steps,
			(agi_now_ms() - a.started_ms) / 1000.0, a.mcp_calls, a.mcp_ms, a.sandbox_calls, a.sandbox_ms);
		if (a.tool_errors)
			fprintf(a.tr, "%u tool error(s) went back to the model as is_error results\n", a.tool_errors);
		exit_code = 0;
	}
	fflush(a.tr);
	if (guarded)
		fclose(guarded);
	for (size_t i = 0; i < a.nmcp; i++) {
		amcp_free(a.mcp[i]);
		json_decref(a.mcp_tools[i]);
	}
	actl_free(a.ctl);
	aplan_free(plan);
	return exit_code;
}
