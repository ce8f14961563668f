package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/atomicfile"
	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/list"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/status"
)

func init() {
	register(&command{name: "list", summary: "write the public list of official difusores (logos linking to their sites)",
		required: []string{"html"},
		examples: []string{
			"prepcast list --html /srv/instituto/difusores.html",
			"prepcast list --html difusores.html --passed-only --lang en",
		},
		run: func(ctx context.Context, a []string, out, _ io.Writer) error { return cmdList(ctx, a, out) }})
}

// cmdList writes the public list of official difusores.
func cmdList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("list")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	out := fs.String("html", "", "write the list page to this file (required)")
	langFlag := fs.String("lang", string(i18n.Default), "language of the page: es or en")
	passedOnly := fs.Bool("passed-only", false, "list only difusores whose latest check (prepcast check) passed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return &usageError{"list: --html OUT is required"}
	}
	lang, err := i18n.Parse(*langFlag)
	if err != nil {
		return &usageError{"--lang: " + err.Error()}
	}
	c, err := loadTargetsConfig(*cfgPath)
	if err != nil {
		return err
	}
	checks := map[string]state.CheckSummary{}
	if db, err := status.OpenDB(statePath(c)); err != nil {
		return err
	} else if db != nil {
		checks, err = db.LastChecks(ctx)
		db.Close()
		if err != nil {
			return err
		}
	}
	var entries []list.Entry
	var missingURL []string
	for i, t := range c.EnabledTargets() {
		ck := checks[t.Name]
		if *passedOnly && !(ck.Passed && !ck.Last.IsZero()) {
			continue
		}
		if t.URL == "" {
			missingURL = append(missingURL, t.Name)
			continue
		}
		e := list.Entry{Name: t.DisplayName, URL: t.URL, Contact: t.Contact, LastPassed: ck.LastPassed, CheckPassed: ck.Passed}
		if e.Name == "" {
			e.Name = t.Name
		}
		if t.Logo != "" {
			if e.Logo, err = config.ReadLogo(t.Logo); err != nil {
				return fmt.Errorf("%w: targets[%d].logo: %w", errConfig, i, err)
			}
		}
		entries = append(entries, e)
	}
	if len(missingURL) > 0 {
		return fmt.Errorf("%w: targets %v have no url; the list links every difusor to its site, so set url for each", errConfig, missingURL)
	}
	page := list.Page{Lang: lang, Entries: entries, Generated: time.Now(), PassedOnly: *passedOnly}
	if err := atomicfile.Write(*out, 0o644, false, func(w io.Writer) error { return list.Write(w, page) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d difusores\n", *out, len(entries))
	return nil
}
