package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Help is built from the flags each command defines: every flag of every
// command appears in "prepcast help" and in the command's own help, and
// "prepcast CMD -h" prints exactly "prepcast help CMD".
func TestHelpShowsEveryFlagAndExamples(t *testing.T) {
	c := &cli{t: t}
	code, all := c.run("help")
	if code != 0 {
		t.Fatalf("help: exit %d\n%s", code, all)
	}
	// The flags an operator once could not find in the help.
	for _, want := range []string{"prepcast push [--config FILE] [--target NAME...] [-v] [--verify]", "--log FILE", "--speed N|max", "--scale F"} {
		if !strings.Contains(all, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	for _, cmd := range sortedCommands() {
		if !strings.Contains(all, "prepcast "+cmd.name) {
			t.Errorf("help does not list %s", cmd.name)
		}
		if len(cmd.examples) == 0 {
			t.Errorf("%s has no example", cmd.name)
		}
		code, one := c.run("help", cmd.name)
		if code != 0 || !strings.Contains(one, "Examples:\n  prepcast") && !strings.Contains(one, "Examples:\n  */10") {
			t.Errorf("help %s: exit %d\n%s", cmd.name, code, one)
		}
		if fs := flagsOf(cmd); fs != nil {
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(one, flagName(f)+" ") && !strings.Contains(one, flagName(f)+"\n") {
					t.Errorf("help %s lacks %s", cmd.name, flagName(f))
				}
				if !strings.Contains(one, strings.Fields(f.Usage)[0]) {
					t.Errorf("help %s lacks the usage of %s", cmd.name, f.Name)
				}
			})
		}
		if cmd.name == "help" {
			continue
		}
		code, dashH := c.run(cmd.name, "-h")
		if code != 0 || dashH != one {
			t.Errorf("prepcast %s -h (exit %d) differs from prepcast help %s:\n%s\n---\n%s", cmd.name, code, cmd.name, dashH, one)
		}
	}
}

// -h stops at flag parsing: asking for help reads no config and writes
// nothing.
func TestHelpHasNoSideEffects(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	c := &cli{t: t}
	for _, cmd := range sortedCommands() {
		if code, out := c.run(cmd.name, "--help"); code != 0 {
			t.Errorf("%s --help: exit %d\n%s", cmd.name, code, out)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Fatalf("help wrote %v", ents[0].Name())
	}
}

// A results tree that does not exist is a usage error (exit 2) that names
// the path and what to do, and makes no cut.
func TestCutMissingSourceExitsTwo(t *testing.T) {
	c := newCLI(t, 1, false)
	missing := filepath.Join(t.TempDir(), "no", "such", "dir")
	code, out := c.run("cut", "--config", c.cfg, "--source", missing)
	if code != exitUsage || !strings.Contains(out, missing) || !strings.Contains(out, "--source") {
		t.Fatalf("cut --source %s: exit %d, want %d\n%s", missing, code, exitUsage, out)
	}
	_, out = c.run("cuts", "--config", c.cfg)
	if !strings.Contains(out, "no cuts yet") {
		t.Fatalf("a cut was made:\n%s", out)
	}
	if code, out := c.run("frobnicate"); code != exitUsage || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: exit %d\n%s", code, out)
	}
	if code, out := c.run("push", "--nope"); code != exitUsage || !strings.Contains(out, "prepcast help push") {
		t.Fatalf("unknown flag: exit %d\n%s", code, out)
	}
}
