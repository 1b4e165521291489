package bench

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// progress reports on stderr (or any writer) how far a run is. On a
// terminal it rewrites one line; elsewhere it writes a line per round.
type progress struct {
	w     io.Writer
	tty   bool
	total int // iterations of the whole run
	done  int
	start time.Time
	width int       // length of the last terminal line, to blank it
	drawn time.Time // when the terminal line was last rewritten
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// say prints a status line.
func (p *progress) say(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if !p.tty {
		fmt.Fprintf(p.w, "bench: %s\n", msg)
		return
	}
	pad := p.width - len(msg)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(p.w, "\rbench: %s%*s", msg, pad, "")
	p.width = len(msg)
}

// level announces the start of a resident-memory level.
func (p *progress) level(rss int) {
	p.say("rss %s: making memory resident, warming up", formatMiB(rss))
}

// add counts n finished iterations; on a terminal it updates the line.
func (p *progress) add(n int, rss, round, rounds int) {
	if p == nil {
		return
	}
	p.done += n
	if p.tty && (time.Since(p.drawn) >= 100*time.Millisecond || p.done == p.total) {
		p.drawn = time.Now()
		p.say("%s", p.status(rss, round, rounds))
	}
}

// roundDone reports a finished round (one line per round off a terminal).
func (p *progress) roundDone(rss, round, rounds int) {
	if p == nil || p.tty {
		return
	}
	p.say("%s", p.status(rss, round, rounds))
}

func (p *progress) status(rss, round, rounds int) string {
	pct := 100 * float64(p.done) / float64(max(p.total, 1))
	s := fmt.Sprintf("rss %s  round %d/%d  %3.0f%%", formatMiB(rss), round, rounds, pct)
	if p.done > 0 && p.done < p.total {
		el := time.Since(p.start)
		eta := time.Duration(float64(el) * float64(p.total-p.done) / float64(p.done))
		s += fmt.Sprintf("  eta %s", eta.Round(time.Second))
	}
	return s
}

// finish ends the terminal line.
func (p *progress) finish() {
	if p == nil || p.w == nil {
		return
	}
	p.say("done in %s", time.Since(p.start).Round(100*time.Millisecond))
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// formatMiB spells a size given in MiB: "16 MiB", "1 GiB", "1.5 GiB".
func formatMiB(mib int) string {
	if mib >= 1024 {
		g := float64(mib) / 1024
		if g == float64(int(g)) {
			return fmt.Sprintf("%d GiB", int(g))
		}
		return fmt.Sprintf("%.1f GiB", g)
	}
	return fmt.Sprintf("%d MiB", mib)
}
