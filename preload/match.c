/* fl_match: fnmatch(3) with FNM_PATHNAME | FNM_NOESCAPE, for the exec
 * policy (libos.MatchExec is the same in Go). No allocation, no locale,
 * no system call: usable in every child. Standalone (tests include it). */
#ifndef FL_HIDDEN
#define FL_HIDDEN __attribute__((visibility("hidden")))
#endif

/* class matches c against the bracket expression at p (just after '['),
 * setting *end after its ']'. It returns -1 when the expression is not
 * closed: the '[' is then an ordinary character. */
static int fl_class(const char *p, unsigned char c, const char **end)
{
	int neg = 0, hit = 0;
	if (*p == '!' || *p == '^')
		neg = 1, p++;
	const char *q = p;
	/* A ']' first is an ordinary member. */
	do {
		if (!*q)
			return -1;
		unsigned char lo = (unsigned char)*q, hi = lo;
		if (q[1] == '-' && q[2] && q[2] != ']') {
			hi = (unsigned char)q[2];
			q += 3;
		} else {
			q++;
		}
		if (lo == '/' || hi == '/')
			continue; /* FNM_PATHNAME: '/' is never in a class */
		if (c >= lo && c <= hi)
			hit = 1;
	} while (*q != ']');
	*end = q + 1;
	return c != '/' && (hit ^ neg);
}

FL_HIDDEN int fl_match(const char *pat, const char *s)
{
	const char *star_p = 0, *star_s = 0; /* backtrack point of the last '*' */
	for (;;) {
		char pc = *pat;
		if (pc == '*') {
			while (*pat == '*')
				pat++;
			star_p = pat, star_s = s;
			continue;
		}
		if (!pc) {
			if (!*s)
				return 1;
		} else if (*s) {
			if (pc == '?' && *s != '/') {
				pat++, s++;
				continue;
			}
			if (pc == '[') {
				const char *end;
				int m = fl_class(pat + 1, (unsigned char)*s, &end);
				if (m == 1) {
					pat = end, s++;
					continue;
				}
				if (m < 0 && *s == '[') {
					pat++, s++;
					continue;
				}
			} else if (pc != '?' && pc == *s) {
				pat++, s++;
				continue;
			}
		}
		/* Mismatch: let the last '*' take one more character, never a
		 * '/'. */
		if (!star_p || !*star_s || *star_s == '/')
			return 0;
		pat = star_p, s = ++star_s;
	}
}
