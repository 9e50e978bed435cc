package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/transfer"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Client-side commands: keep a machine's image in sync with the catalogue"}
	cmd.AddCommand(newSyncCmd())
	cmd.AddCommand(newNBDAttachCmd())
	return cmd
}

func newSyncCmd() *cobra.Command {
	var cfg transfer.SyncConfig
	var servers, image, doneFile, logLevel string
	var asJSON bool
	var cpus int
	var seedFor time.Duration
	cmd := &cobra.Command{
		Use:   "sync --server URL[,URL...] (--image NAME[@VERSION] | --client MAC) --target PATH",
		Short: "Bring a local copy of an image up to date, fetching only the pieces that differ",
		Long: `Verifies the target piece by piece against the hashes in the catalogue, fetches
only the pieces that differ from server nodes and other clients, verifies each
as it arrives and writes it in place (--full-check also re-reads the whole file
for its sha256). An interrupted sync resumes where it stopped.
If no server answers, the target is left as it was.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Servers = splitList([]string{servers})
			for i, s := range cfg.Servers {
				if !strings.Contains(s, "://") {
					cfg.Servers[i] = "http://" + s
				}
			}
			if name, ver, ok := strings.Cut(image, "@"); ok {
				cfg.Image, cfg.Version = name, ver
			} else {
				cfg.Image = image
			}
			if err := checkSyncFlags(cfg); err != nil {
				return err
			}
			if err := setCPUs(cmd, cpus); err != nil {
				return err
			}
			log, err := newLogger(logLevel, "text", "agent")
			if err != nil {
				return err
			}
			cfg.Logger = log
			if err := setTimerSlack(agentTimerSlack); err != nil {
				log.Debug("timer slack unchanged; the agent wakes more often", "err", err)
			}
			if doneFile != "" {
				// A done file left by an earlier sync must not vouch for a
				// target this sync is about to change.
				if err := os.Remove(doneFile); err != nil && !os.IsNotExist(err) {
					return fmt.Errorf("--done-file: %w", err)
				}
				cfg.OnComplete = func(rep transfer.SyncReport) error { return writeReport(doneFile, rep) }
			}
			if seedFor > 0 {
				if !cfg.Seed {
					return fmt.Errorf("--seed-for needs --seed")
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), seedFor)
				defer cancel()
				cmd.SetContext(ctx)
			}
			return runSync(cmd, cfg, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&servers, "server", "", "API URL of one or more server nodes, comma separated")
	f.StringVar(&image, "image", "", "image to sync, NAME or NAME@VERSION")
	f.StringVar(&cfg.MAC, "client", "", "sync what the catalogue assigns to this client MAC")
	f.StringVar(&cfg.Target, "target", "", "file holding (or to hold) the local copy")
	f.StringVar(&cfg.ListenAddr, "listen", "0.0.0.0:0", "BitTorrent listen address for serving other clients")
	f.BoolVar(&cfg.Seed, "seed", false, "keep seeding to other clients after the sync, until stopped")
	f.DurationVar(&seedFor, "seed-for", 0, "with --seed: stop after this long in all (0: until stopped)")
	f.BoolVar(&cfg.FullCheck, "full-check", false, "after the pieces, re-read the whole target and compare its sha256 with the catalogue's")
	f.IntVar(&cpus, "cpus", 1, "CPU cores the agent may use at once (GOMAXPROCS; without --cpus a GOMAXPROCS variable wins)")
	f.BoolVar(&asJSON, "json", false, "print the final report as JSON")
	f.StringVar(&logLevel, "log-level", "warn", "log to stderr at this level: debug, info, warn, error")
	f.StringVar(&doneFile, "done-file", "", "write the JSON report to this file once the copy is verified (before seeding)")
	return cmd
}

// setCPUs limits the agent to n cores unless GOMAXPROCS is set. One is
// plenty for a 1 Gbit/s link (hashing runs at ~1.6 GB/s per core) and
// leaves the machine to its user; on a fleet of 20 agents sharing 2 cores,
// a second core only added scheduler wake-ups (agents' CPU -25 %).
func setCPUs(cmd *cobra.Command, n int) error {
	if n < 1 {
		return fmt.Errorf("--cpus must be at least 1")
	}
	if os.Getenv("GOMAXPROCS") != "" && !cmd.Flags().Changed("cpus") {
		return nil
	}
	runtime.GOMAXPROCS(n)
	return nil
}

func checkSyncFlags(cfg transfer.SyncConfig) error {
	switch {
	case len(cfg.Servers) == 0:
		return fmt.Errorf("--server is required")
	case cfg.Target == "":
		return fmt.Errorf("--target is required")
	case (cfg.Image == "") == (cfg.MAC == ""):
		return fmt.Errorf("give exactly one of --image and --client")
	}
	return nil
}

func runSync(cmd *cobra.Command, cfg transfer.SyncConfig, asJSON bool) error {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := os.Stderr.Stat()
	if err == nil && st.Mode()&os.ModeCharDevice != 0 {
		cfg.Progress = drawSync
	}
	if cfg.Seed && !asJSON {
		cfg.Progress = chain(cfg.Progress, func(p transfer.SyncProgress) {
			if p.Phase == "seed" {
				fmt.Fprintln(cmd.OutOrStdout(), "sync complete; seeding to other clients until stopped")
			}
		})
	}
	rep, err := transfer.Sync(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s is %s@%s: %s fetched, %s reused, %d pieces, %d peers, %.1fs\n",
		rep.Target, rep.Image, short(rep.Version), human(rep.Fetched), human(rep.Reused), rep.Pieces, len(rep.PeersUsed), rep.Seconds)
	return nil
}

// writeReport writes atomically, so a watcher never reads half a report.
func writeReport(path string, rep transfer.SyncReport) error {
	b, _ := json.MarshalIndent(rep, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--done-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("--done-file: %w", err)
	}
	return nil
}

func chain(a, b func(transfer.SyncProgress)) func(transfer.SyncProgress) {
	return func(p transfer.SyncProgress) {
		if a != nil {
			a(p)
		}
		b(p)
	}
}

var lastDraw time.Time

func drawSync(p transfer.SyncProgress) {
	if time.Since(lastDraw) < 200*time.Millisecond && p.Phase == "fetch" {
		return
	}
	lastDraw = time.Now()
	switch p.Phase {
	case "fetch":
		fmt.Fprintf(os.Stderr, "\r  fetch: %s / %s  %3.0f%%  %s/s  %d peers   ", human(p.Done), human(p.Total),
			100*float64(p.Done)/float64(max(p.Total, 1)), human(int64(p.BytesRate)), p.Peers)
	default:
		fmt.Fprintf(os.Stderr, "\r  %s...%40s\n", p.Phase, "")
	}
}
