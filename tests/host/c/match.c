/* Prints, for each pattern/name pair on the command line, what the
 * library's exec policy matcher decides and what glibc's
 * fnmatch(FNM_PATHNAME | FNM_NOESCAPE) does: "1 1", "0 0", ... */
#include <fnmatch.h>
#include <stdio.h>

#include "../../../preload/match.c"

int main(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2)
		printf("%d %d\n", fl_match(argv[i], argv[i + 1]),
		       fnmatch(argv[i], argv[i + 1], FNM_PATHNAME | FNM_NOESCAPE) == 0);
	return 0;
}
