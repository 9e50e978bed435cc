// Command shoal is the single shoal binary: `shoal server` runs a server
// node; the other verbs are operator commands that talk to any node's API.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

func main() {
	runAsInit()
	stop := profile(os.Getenv("SHOAL_CPUPROFILE"))
	err := newRoot().Execute()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoal:", err)
		os.Exit(1)
	}
}

// profile writes a CPU profile of the whole run to path (a developer aid:
// SHOAL_CPUPROFILE=cpu.out shoal agent sync ...; go tool pprof cpu.out).
func profile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoal: SHOAL_CPUPROFILE:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "shoal",
		Short:         "shoal boots fleets from one read-only OS image, served by a cluster of peers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd(), newAgentCmd())
	op := newOperator(root)
	root.AddCommand(op.statusCmd(), op.nodesCmd(), op.groupCmd(), op.clientCmd(), op.imageCmd())
	return root
}
