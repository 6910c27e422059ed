/* SPDX-License-Identifier: MIT */
/* The runner for the TSan build: see shim/criterion/criterion.h. */
#include <criterion/criterion.h>

struct shim_test *shim_tests;

int main(void)
{
	struct shim_test *rev = NULL, *t, *next;
	unsigned passed = 0;

	/* Constructors pushed in reverse: restore file order. */
	for (t = shim_tests; t; t = next) {
		next = t->next;
		t->next = rev;
		rev = t;
	}
	for (t = rev; t; t = t->next) {
		fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
		if (t->init)
			t->init();
		t->fn();
		if (t->fini)
			t->fini();
		fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
		passed++;
	}
	printf("%u passed, 0 failed\n", passed);
	return 0;
}
