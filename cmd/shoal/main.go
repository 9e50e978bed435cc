// Command shoal is the single shoal binary: `shoal server` runs a server
// node; the other verbs are operator commands that talk to any node's API.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shoal:", err)
		os.Exit(1)
	}
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
