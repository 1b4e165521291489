package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Config describes a run.
type Config struct {
	RSS     []int    // resident memory levels of the hosts, in MiB
	N       int      // timed iterations per cell
	Rounds  int      // each cell's N iterations are split over this many rounds
	Warmup  int      // untimed iterations per cell at the start of each level
	Targets []Target // programs the children exec
	Engines []Spec   // mechanisms to run
	CBench  string   // path of forkless-cbench; needed for C-host engines
	// Lib is the preload library (lib/libforkless.so); forkless-c needs
	// it, and so does the true+preload target (whose Env names it).
	Lib      string
	Progress io.Writer
}

// Row is the result of one cell: a mechanism, a target and an RSS level.
type Row struct {
	Spec
	Target string
	RSSMiB int
	Stats
}

// cellKey identifies a cell while samples are collected.
type cellKey struct {
	spec   Spec
	target string
}

// batchSize is how many of n iterations round r of rounds runs: the rounds
// differ by at most one and add up to n.
func batchSize(n, rounds, r int) int {
	return n*(r+1)/rounds - n*r/rounds
}

// Run measures every cell and returns one Row per cell, ordered by RSS,
// target and Catalog order.
func Run(cfg Config) ([]Row, error) {
	if cfg.N <= 0 {
		return nil, errors.New("bench: N must be positive")
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	cfg.Rounds = min(cfg.Rounds, cfg.N)
	if len(cfg.RSS) == 0 || len(cfg.Targets) == 0 || len(cfg.Engines) == 0 {
		return nil, errors.New("bench: nothing to run (no rss level, target or engine)")
	}
	for _, r := range cfg.RSS {
		if r < 0 {
			return nil, fmt.Errorf("bench: negative rss %d", r)
		}
	}
	for _, s := range cfg.Engines {
		if s.NeedsLib() {
			if _, err := CheckLib(cfg.Lib); err != nil {
				return nil, fmt.Errorf("bench: %s: %w", s, err)
			}
		}
	}
	engines := slices.Clone(cfg.Engines)
	slices.SortStableFunc(engines, func(a, b Spec) int { return a.order() - b.order() })

	perLevel := cfg.N * len(cfg.Targets) * len(engines)
	prog := newProgress(cfg.Progress, perLevel*len(cfg.RSS))
	var rows []Row
	for _, rss := range cfg.RSS {
		levelRows, err := runLevel(cfg, engines, rss, prog)
		if err != nil {
			return nil, fmt.Errorf("bench: rss %s: %w", formatMiB(rss), err)
		}
		rows = append(rows, levelRows...)
	}
	prog.finish()
	return rows, nil
}

// runLevel measures every cell at one resident-memory level.
func runLevel(cfg Config, engines []Spec, rss int, prog *progress) (rows []Row, err error) {
	prog.level(rss)
	mem, err := MakeResident(rss)
	if err != nil {
		return nil, err
	}
	defer mem.Release()

	// Up to two C hosts, each holding rss MiB: one plain, one with the
	// preload library for forkless-c.
	hosts := map[string]*CHost{}
	defer func() {
		for _, h := range hosts {
			if cerr := h.Close(); err == nil && cerr != nil {
				err = cerr
			}
		}
	}()
	mechs := make([]Mechanism, 0, len(engines))
	for _, s := range engines {
		var m Mechanism
		switch s.Host {
		case HostGo:
			m, err = goMechanism(s.Engine)
		case HostC:
			lib := ""
			if s.NeedsLib() {
				lib = cfg.Lib
			}
			host := hosts[lib]
			if host == nil {
				if cfg.CBench == "" {
					return nil, errors.New("C-host engines need forkless-cbench")
				}
				if host, err = StartCHost(cfg.CBench, rss, lib); err != nil {
					return nil, err
				}
				hosts[lib] = host
			}
			m, err = cMechanism(s.Engine, host)
		default:
			err = fmt.Errorf("unknown host %q", s.Host)
		}
		if err != nil {
			return nil, err
		}
		mechs = append(mechs, m)
	}

	type job struct {
		mech   Mechanism
		target Target
	}
	var jobs []job
	for _, t := range cfg.Targets {
		for _, m := range mechs {
			jobs = append(jobs, job{m, t})
		}
	}
	// The warm-up also waits for the C host to have made its memory
	// resident, so the timed rounds do not overlap that work.
	for _, j := range jobs {
		if cfg.Warmup > 0 {
			if _, err := j.mech.Batch(j.target, cfg.Warmup); err != nil {
				return nil, fmt.Errorf("%s, target %s: %w", j.mech.Spec, j.target.Name, err)
			}
		}
	}

	samples := make(map[cellKey][]time.Duration, len(jobs))
	for r := range cfg.Rounds {
		n := batchSize(cfg.N, cfg.Rounds, r)
		// Start each round at a different job, so no mechanism is always
		// the first (or the one after the slowest).
		for i := range jobs {
			j := jobs[(i+r)%len(jobs)]
			d, err := j.mech.Batch(j.target, n)
			if err != nil {
				return nil, fmt.Errorf("%s, target %s: %w", j.mech.Spec, j.target.Name, err)
			}
			k := cellKey{j.mech.Spec, j.target.Name}
			samples[k] = append(samples[k], d...)
			prog.add(n, rss, r+1, cfg.Rounds)
		}
		prog.roundDone(rss, r+1, cfg.Rounds)
	}

	for _, t := range cfg.Targets {
		for _, m := range mechs {
			rows = append(rows, Row{
				Spec:   m.Spec,
				Target: t.Name,
				RSSMiB: rss,
				Stats:  Summarize(samples[cellKey{m.Spec, t.Name}]),
			})
		}
	}
	return rows, nil
}
