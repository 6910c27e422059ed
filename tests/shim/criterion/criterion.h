/* SPDX-License-Identifier: MIT */
/*
 * A minimal stand-in for Criterion's Test()/cr_assert*() used only by the
 * ThreadSanitizer build.  Criterion's forking runner cannot start under
 * TSan (its inheritable arena clashes with TSan's memory layout), so the
 * TSan build compiles the very same stress-test sources against this header:
 * tests run in-process, one after another, and any failed assertion ends the
 * program.  Only the features our tests use are provided.
 */
#ifndef CORRAL_TESTS_SHIM_CRITERION_H
#define CORRAL_TESTS_SHIM_CRITERION_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shim_test {
	const char *suite, *name;
	void (*fn)(void);
	void (*init)(void);
	void (*fini)(void);
	double timeout;
	struct shim_test *next;
};

struct shim_opts {
	void (*init)(void);
	void (*fini)(void);
	double timeout;
};

extern struct shim_test *shim_tests;

__attribute__((format(printf, 4, 5), noreturn)) static inline void
shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[FAIL] %s:%d: %s\n  ", file, line, expr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

#define SHIM_CHECK(cond, expr, ...)                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			shim_fail(__FILE__, __LINE__, expr, " " __VA_ARGS__);  \
	} while (0)

#define cr_assert(c, ...)            SHIM_CHECK((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)        SHIM_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)      SHIM_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)     SHIM_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)      SHIM_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)     SHIM_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)      SHIM_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)     SHIM_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)       SHIM_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...)   SHIM_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)  SHIM_CHECK(strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)
#define cr_assert_fail(...)          SHIM_CHECK(0, "fail", __VA_ARGS__)

/* Test(..., .timeout = 60) overrides the default below: intended. */
#pragma GCC diagnostic ignored "-Woverride-init"

#define Test(suite_, name_, ...)                                               \
	static void suite_##_##name_##_fn(void);                               \
	__attribute__((constructor)) static void suite_##_##name_##_reg(void)  \
	{                                                                      \
		static struct shim_opts o = { .timeout = 0, __VA_ARGS__ };                 \
		static struct shim_test t;                                     \
		t.suite = #suite_;                                             \
		t.name = #name_;                                               \
		t.fn = suite_##_##name_##_fn;                                  \
		t.init = o.init;                                               \
		t.fini = o.fini;                                               \
		t.next = shim_tests;                                           \
		shim_tests = &t;                                               \
	}                                                                      \
	static void suite_##_##name_##_fn(void)

#endif
