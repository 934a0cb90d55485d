#include "core/daemon.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/log.h"

struct dmn {
	const dmn_ops *ops;
	void *ud;
	uv_signal_t sigterm, sigint, sighup;
	const char *path;
	int cli_level, cli_format; /* flags win over the config, on reload too */
	int signals;
	bool closed;
};

void dmn_drained(dmn *d)
{
	if (d->closed)
		return;
	d->closed = true;
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
}

/* The log level and format of a config just loaded, unless the command line set them. */
static void apply_logging(dmn *d, int level, int format)
{
	if (d->cli_level >= 0)
		level = d->cli_level;
	if (d->cli_format >= 0)
		format = d->cli_format;
	log_set_level(level >= 0 ? (enum log_level)level : LOG_INFO);
	log_set_format(format >= 0 ? (enum log_format)format : LOG_FMT_LOGFMT);
}

/* SIGHUP used to end the process (its default action); now it reloads the config, or with only recheck
 * checks it and applies its logging keys. */
static void on_hup(uv_signal_t *s, int signum)
{
	dmn *d = s->data;
	char err[512], q[600], restart[512] = "", qr[600];
	int level = -1, format = -1;
	(void)signum;
	if (d->ops->reload) {
		if (d->ops->reload(d->ud, d->path, &level, &format, restart, sizeof restart, err, sizeof err) < 0) {
			log_error("msg=\"config reload failed, keeping the running config\" err=%s", log_quote(err, q, sizeof q));
			return;
		}
		apply_logging(d, level, format);
		if (restart[0])
			log_warn("msg=\"config reloaded; changed keys that need a restart keep their running values\" file=%s "
				 "restart_needed_for=%s", log_quote(d->path, q, sizeof q), log_quote(restart, qr, sizeof qr));
		else
			log_info("msg=\"config reloaded\" file=%s", log_quote(d->path, q, sizeof q));
		return;
	}
	if (!d->ops->recheck) {
		log_warn("msg=\"SIGHUP ignored: this daemon does not reload; restart it to apply a changed config\"");
		return;
	}
	if (d->ops->recheck(d->ud, d->path, &level, &format, err, sizeof err) < 0) {
		log_error("msg=\"config reload failed, keeping the running config\" err=%s", log_quote(err, q, sizeof q));
		return;
	}
	apply_logging(d, level, format);
	log_info("msg=\"config checked on SIGHUP\" file=%s applied=\"log_level log_format\" "
		 "restart_needed_for=\"everything else: this daemon reloads no other key live\"", log_quote(d->path, q, sizeof q));
}

static void on_signal(uv_signal_t *s, int signum)
{
	dmn *d = s->data;
	if (++d->signals > 1) {
		log_warn("msg=\"second signal: exiting now\" signal=%d", signum);
		_exit(1);
	}
	d->ops->drain(d->ud, d, signum);
}

/* A relay or proxy holds descriptors per client: use all that are allowed. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int dmn_run(const dmn_ops *ops, void *ud, int argc, char **argv)
{
	cli_args args;
	char err[512];
	int level = -1, format = -1, rc = 1, a;
	dmn d;

	memset(&d, 0, sizeof d);
	d.ops = ops;
	d.ud = ud;
	if ((a = cli_parse(argc, argv, ops->prog, ops->usage, true, &args)))
		return a == CLI_EXIT_HELP ? 0 : 2;
	d.path = args.path;
	d.cli_level = args.log_level;
	d.cli_format = args.log_format;
	/* The flag's format holds from the first line; the config's from after the load. */
	if (args.log_format >= 0)
		log_set_format((enum log_format)args.log_format);
	if (ops->load(ud, args.path, &level, &format, err, sizeof err) < 0) {
		fprintf(stderr, "%s: %s\n", ops->prog, err);
		ops->cleanup(ud);
		return 1;
	}
	if (args.log_level >= 0)
		level = args.log_level;
	if (args.log_format >= 0)
		format = args.log_format;
	if (level >= 0)
		log_set_level((enum log_level)level);
	if (format >= 0)
		log_set_format((enum log_format)format);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	uv_loop_t *loop = uv_default_loop();
	/* The watchers go in before start: a SIGTERM while the daemon starts (a stop right after a start) waits
	 * for the loop and drains, where the default action would have killed it. */
	uv_signal_init(loop, &d.sigterm);
	uv_signal_init(loop, &d.sigint);
	uv_signal_init(loop, &d.sighup);
	d.sigterm.data = d.sigint.data = d.sighup.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sighup, on_hup, SIGHUP);
	if (ops->start(ud, loop, err, sizeof err) < 0) {
		log_error("msg=\"cannot start\" err=\"%s\"", err);
		dmn_drained(&d);
	} else {
		rc = 0;
	}
	uv_run(loop, UV_RUN_DEFAULT); /* until the daemon has closed everything */
	uv_loop_close(loop);
	ops->cleanup(ud);
	return rc;
}
