// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Degraded states (degraded.h): set and cleared by the parts of the agent
 * that notice them, reported by status and /metrics with their start time.
 */
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "agent/core/degraded.h"
#include "agent/core/log.h"

static const char *const names[DEG_MAX] = {
	[DEG_POLICY_DIR_MISSING]	= "policy_dir_missing",
	[DEG_POLICY_DIR_REPLACED]	= "policy_dir_replaced",
	[DEG_POLICY_REJECTED]		= "policy_rejected",
	[DEG_MASS_REMOVAL_HELD]		= "mass_removal_held",
	[DEG_QUARANTINE]		= "vms_quarantined",
	[DEG_AUDIT_UNWRITABLE]		= "audit_log_unwritable",
	[DEG_TPM_UNREACHABLE]		= "tpm_unreachable",
};

const char *degraded_name(enum degraded_kind k)
{
	return (unsigned int)k < DEG_MAX ? names[k] : "?";
}

bool degraded_set(struct degraded *d, enum degraded_kind k, const char *fmt, ...)
{
	struct degraded_state *s = &d->s[k];
	bool began = !s->active;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
	va_end(ap);
	if (began) {
		s->active = true;
		s->since = (uint64_t)time(NULL);
		log_warn("degraded: %s: %s", names[k], s->detail);
	}
	return began;
}

bool degraded_clear(struct degraded *d, enum degraded_kind k)
{
	struct degraded_state *s = &d->s[k];

	if (!s->active)
		return false;
	log_info("no longer degraded: %s (for %llu s)", names[k],
		 (unsigned long long)((uint64_t)time(NULL) - s->since));
	memset(s, 0, sizeof(*s));
	return true;
}

bool degraded_active(const struct degraded *d, enum degraded_kind k)
{
	return d->s[k].active;
}

cJSON *degraded_json(const struct degraded *d)
{
	cJSON *arr = cJSON_CreateArray();

	for (int k = 0; arr && k < DEG_MAX; k++) {
		const struct degraded_state *s = &d->s[k];
		time_t t = (time_t)s->since;
		char iso[32];
		struct tm tm;
		cJSON *o;

		if (!s->active)
			continue;
		strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "state", names[k]);
		cJSON_AddNumberToObject(o, "since", (double)s->since);
		cJSON_AddStringToObject(o, "since_iso", iso);
		cJSON_AddStringToObject(o, "detail", s->detail);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

void degraded_prometheus(FILE *out, const struct degraded *d)
{
	fprintf(out, "# HELP rayos_degraded Whether the agent is in this degraded state.\n"
		"# TYPE rayos_degraded gauge\n");
	for (int k = 0; k < DEG_MAX; k++)
		fprintf(out, "rayos_degraded{state=\"%s\"} %d\n", names[k], d->s[k].active);
	fprintf(out, "# HELP rayos_degraded_since_seconds Unix time the degraded state began "
		"(0: not degraded).\n# TYPE rayos_degraded_since_seconds gauge\n");
	for (int k = 0; k < DEG_MAX; k++)
		fprintf(out, "rayos_degraded_since_seconds{state=\"%s\"} %llu\n", names[k],
			(unsigned long long)d->s[k].since);
}
