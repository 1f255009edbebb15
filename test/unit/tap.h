/*
 * tap.h
 *	  A minimal Test Anything Protocol producer for the C unit tests:
 *	  "ok N - description" / "not ok N - description", diagnostics as
 *	  "# ..." lines, and the plan "1..N" printed last by tap_done(), whose
 *	  result is the process exit status (1 when any test failed).
 *
 * Header-only; include it in exactly one translation unit.
 */
#ifndef CDVIZ_TAP_H
#define CDVIZ_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int	tap_count;
static int	tap_failures;

/* Print a diagnostic line ("# ..."), ignored by TAP consumers. */
static void
tap_diag(const char *fmt,...)
{
	va_list		ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

/* Record one test result; on failure say where it was asserted. */
static bool
tap_ok_at(bool pass, const char *file, int line, const char *fmt,...)
{
	va_list		ap;

	tap_count++;
	printf("%sok %d - ", pass ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	if (!pass)
	{
		tap_failures++;
		tap_diag("  Failed test at %s line %d", file, line);
	}
	return pass;
}

#define ok(cond, ...) tap_ok_at((cond) ? true : false, __FILE__, __LINE__, __VA_ARGS__)

/* String equality, showing both values on failure; NULL is "absent". */
static bool
tap_is_str_at(const char *got, const char *want, const char *file, int line,
			  const char *desc)
{
	bool		pass = (got == NULL || want == NULL) ? got == want : strcmp(got, want) == 0;

	tap_ok_at(pass, file, line, "%s", desc);
	if (!pass)
		tap_diag("         got: %s\n#     expected: %s", got ? got : "(null)",
				 want ? want : "(null)");
	return pass;
}

#define is_str(got, want, desc) tap_is_str_at((got), (want), __FILE__, __LINE__, (desc))

/* Integer equality, showing both values on failure. */
static bool
tap_is_int_at(long long got, long long want, const char *file, int line, const char *desc)
{
	bool		pass = got == want;

	tap_ok_at(pass, file, line, "%s", desc);
	if (!pass)
		tap_diag("         got: %lld\n#     expected: %lld", got, want);
	return pass;
}

#define is_int(got, want, desc) tap_is_int_at((long long) (got), (long long) (want), \
											  __FILE__, __LINE__, (desc))

/* Print the plan and return the exit status. */
static int
tap_done(void)
{
	printf("1..%d\n", tap_count);
	if (tap_failures)
		tap_diag("Looks like you failed %d test%s of %d.", tap_failures,
				 tap_failures == 1 ? "" : "s", tap_count);
	fflush(stdout);
	return tap_failures ? 1 : 0;
}

#endif							/* CDVIZ_TAP_H */
