/* vfork children that exec, exit, and force a real child (getpid, kill):
 * the trace must say which were real children and why. */
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
#include <stdio.h>
int main(void){
  int st; pid_t p = vfork();
  if (p == 0) { execl("/bin/true","true",(char*)0); _exit(127); }
  waitpid(p,&st,0);
  p = vfork();
  if (p == 0) { if (getpid() > 0) _exit(3); _exit(4); }
  waitpid(p,&st,0); printf("status %d\n", WEXITSTATUS(st));
  p = vfork();
  if (p == 0) { _exit(5); }
  waitpid(p,&st,0); printf("status %d\n", WEXITSTATUS(st));
  p = vfork();
  if (p == 0) { getppid(); kill(0,0); execl("/bin/true","true",(char*)0); _exit(127); }
  waitpid(p,&st,0); printf("status %d\n", WEXITSTATUS(st));
  return 0; }
