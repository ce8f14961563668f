package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// command is one prepcast subcommand as the dispatch runs it and help
// shows it. Help text is built from the flags the command defines (it is
// run with -h, which stops at flag parsing), so the two cannot drift.
type command struct {
	name     string
	synopsis string // extra words after the flags, e.g. "< PACKAGE"
	summary  string // one line, what the command does
	required []string
	examples []string // "prepcast …  # what it does"
	run      func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands holds every registered command by name.
var commands = map[string]*command{}

// helpOrder is the order help lists the commands in; commands not named
// here follow in alphabetical order.
var helpOrder = []string{"keygen", "key", "cut", "cuts", "package", "push", "cycle", "run", "status", "verify", "report", "check", "list", "apply", "gen", "demo", "version", "help"}

// register adds a command. A command in its own file registers itself in
// an init function:
//
//	func init() { register(&command{name: "verify", summary: "…", examples: …, run: cmdVerify}) }
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("prepcast: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func init() {
	register(&command{name: "keygen", summary: "write an ed25519 signing key pair for manifests",
		examples: []string{"prepcast keygen --out /etc/prepcast   # writes manifest.key (0600) and manifest.pub"},
		run:      func(_ context.Context, a []string, out, _ io.Writer) error { return cmdKeygen(a, out) }})
	register(&command{name: "cut", summary: "build the next cut of the results tree; prints its seq and id",
		examples: []string{
			"prepcast cut --config /etc/prepcast/prepcast.yaml",
			"prepcast cut --source ./results --allow-empty   # a cut even if nothing changed",
		},
		run: cmdCut})
	register(&command{name: "cuts", summary: "list the cuts in the local store",
		examples: []string{"prepcast cuts --config /etc/prepcast/prepcast.yaml"},
		run:      func(_ context.Context, a []string, out, _ io.Writer) error { return cmdCuts(a, out) }})
	register(&command{name: "package", summary: "write a cut's package (tar in zstd), checked against its recorded SHA-256",
		required: []string{"out"},
		examples: []string{
			"prepcast package --out cut.tar.zst                  # latest cut, from the one before",
			"prepcast package --cut 12 --from 0 --out - | zstd -d | tar t   # the whole cut 12",
		},
		run: func(_ context.Context, a []string, out, errw io.Writer) error { return cmdPackage(a, out, errw) }})
	register(&command{name: "push", summary: "push the latest cut until each target acknowledges it",
		examples: []string{
			"prepcast push --config /etc/prepcast/prepcast.yaml",
			"prepcast push --target difusor-3 --verify   # check what difusor-3 holds and repair it",
		},
		run: func(ctx context.Context, a []string, out, errw io.Writer) error {
			return cmdPush(ctx, a, out, errw, false)
		}})
	register(&command{name: "cycle", summary: "cut + push, what cron runs; never overlaps a push",
		examples: []string{"*/10 * * * * prepcast cycle --config /etc/prepcast/prepcast.yaml >> /var/log/prepcast-cron.log 2>&1"},
		run: func(ctx context.Context, a []string, out, errw io.Writer) error {
			return cmdPush(ctx, a, out, errw, true)
		}})
	register(&command{name: "run", summary: "daemon: the configured schedule; /metrics, /status and the dashboard at /",
		examples: []string{
			"prepcast run --config /etc/prepcast/prepcast.yaml   # SIGUSR1: a cycle now; SIGTERM: stop (exit 0)",
			"prepcast run --lang en                              # dashboard in English",
		},
		run: cmdRun})
	register(&command{name: "status", summary: "per-target lag and state; exit 1 if a target lags over max_lag",
		examples: []string{
			"prepcast status --watch",
			"prepcast status --json | jq '.targets[] | select(.behind)'",
			"prepcast status --probe --verbose   # read every difusor's own ack, full error text",
		},
		run: func(ctx context.Context, a []string, out, _ io.Writer) error { return cmdStatus(ctx, a, out) }})
	register(&command{name: "apply", synopsis: "< PACKAGE", summary: "on a difusor: apply the package on standard input (what mode: exec targets run over SSH)",
		required: []string{"root"},
		examples: []string{
			"prepcast apply --root /var/www/prep --public-key /etc/prepcast/institute.pub < cut.tar.zst",
		},
		run: func(ctx context.Context, a []string, out, errw io.Writer) error {
			return cmdApply(ctx, a, os.Stdin, out, errw)
		}})
	register(&command{name: "demo", summary: "replay the Puebla 2024 night to local difusores (no setup, no network)",
		examples: []string{
			"prepcast demo",
			"prepcast demo --speed max --scale 0.01 --cuts 20   # a quick run",
		},
		run: cmdDemo})
	register(&command{name: "version", summary: "print the version",
		examples: []string{"prepcast version"},
		run: func(_ context.Context, a []string, out, _ io.Writer) error {
			if err := parseFlags(newFlags("version"), a); err != nil {
				return err
			}
			fmt.Fprintln(out, "prepcast", version)
			return nil
		}})
	register(&command{name: "help", synopsis: "[COMMAND]", summary: "list the commands, or show one command's flags and examples",
		examples: []string{"prepcast help push", "prepcast push -h   # the same"},
		run:      func(_ context.Context, a []string, out, _ io.Writer) error { return cmdHelp(a, out) }})
}

// helpRequest is returned by parseFlags for -h or --help: the dispatch
// prints the command's help, built from fs.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }
func (h *helpRequest) Unwrap() error { return flag.ErrHelp }

// flagsOf returns the flag set command c defines, by running it with -h
// (every command parses its flags before it does anything else), or nil
// for a command without flags.
func flagsOf(c *command) *flag.FlagSet {
	err := c.run(context.Background(), []string{"-h"}, io.Discard, io.Discard)
	var h *helpRequest
	if errors.As(err, &h) {
		return h.fs
	}
	return nil
}

// cmdHelp prints the list of commands, or one command's help.
func cmdHelp(args []string, w io.Writer) error {
	fs := newFlags("help")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return &helpRequest{fs}
	} else if err != nil {
		return &usageError{err.Error()}
	}
	args = fs.Args()
	switch len(args) {
	case 0:
		writeUsage(w)
		return nil
	case 1:
		c, ok := commands[args[0]]
		if !ok {
			return &usageError{fmt.Sprintf("help: unknown command %q", args[0])}
		}
		writeCommandHelp(w, c, flagsOf(c))
		return nil
	}
	return &usageError{"help: give at most one command"}
}

// sortedCommands returns the registered commands in help order.
func sortedCommands() []*command {
	var out []*command
	for _, n := range helpOrder {
		if c, ok := commands[n]; ok {
			out = append(out, c)
		}
	}
	var rest []string
	for n := range commands {
		if !slices.Contains(helpOrder, n) {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	for _, n := range rest {
		out = append(out, commands[n])
	}
	return out
}

// writeUsage writes the list of commands with their flags.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "prepcast publishes PREP results to difusores over SFTP.\n\nUsage:\n")
	for _, c := range sortedCommands() {
		fmt.Fprintf(w, "  %s\n      %s\n", synopsis(c, flagsOf(c)), c.summary)
	}
	fmt.Fprint(w, `
"prepcast help COMMAND" or "prepcast COMMAND -h" shows a command's flags and examples.
--config defaults to ./prepcast.yaml. Exit codes: 0 all good; 1 some targets
failed or lag; 2 usage or config error; 130 interrupted (SIGINT; SIGTERM stops
the daemon with 0).
`)
}

// synopsis is the command line of c: "prepcast push [--config FILE] …".
func synopsis(c *command, fs *flag.FlagSet) string {
	parts := []string{"prepcast", c.name}
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) {
			s := flagName(f)
			if name, _ := valueName(f); name != "" {
				s += " " + name
			}
			if _, repeat := f.Value.(*stringsFlag); repeat {
				s += "..."
			}
			if !slices.Contains(c.required, f.Name) {
				s = "[" + s + "]"
			}
			parts = append(parts, s)
		})
	}
	if c.synopsis != "" {
		parts = append(parts, c.synopsis)
	}
	return strings.Join(parts, " ")
}

// writeCommandHelp writes one command's synopsis, flags and examples.
func writeCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s\n\n%s.\n", synopsis(c, fs), upperFirst(c.summary))
	if fs != nil && countFlags(fs) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := valueName(f)
			s := flagName(f)
			if name != "" {
				s += " " + name
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			if slices.Contains(c.required, f.Name) && !strings.Contains(usage, "(required)") {
				usage += " (required)"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", s, usage)
		})
		tw.Flush()
	}
	if len(c.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func countFlags(fs *flag.FlagSet) (n int) {
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}

// metavars names the value of common flags in help: --config FILE.
var metavars = map[string]string{
	"config": "FILE", "source": "DIR", "out": "PATH", "target": "NAME", "root": "DIR", "public-key": "FILE",
	"log": "FILE", "cut": "N", "from": "N", "cuts": "N", "difusores": "N", "scale": "F", "speed": "N|max",
	"dir": "DIR", "lang": "es|en", "listen": "ADDR", "report": "DIR", "html": "FILE", "publication-end": "TIME",
	"retention": "DURATION",
}

// valueName returns the name of f's value and its usage text: a name in
// back quotes in the usage wins, then metavars, then the value's type.
func valueName(f *flag.Flag) (string, string) {
	name, usage := flag.UnquoteUsage(f)
	if strings.Contains(f.Usage, "`") || name == "" {
		return name, usage
	}
	if m, ok := metavars[f.Name]; ok {
		return m, usage
	}
	return strings.ToUpper(name), usage
}

// flagName is "-v" for a one-letter flag, "--name" otherwise.
func flagName(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
