package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prepcast/prepcast/check"
	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

func init() {
	register(&command{name: "check", summary: "measure each difusor against the call's rules (SSH, SFTP, disk, upload rate, file modes, Cache-Control); exit 1 if any requirement fails",
		examples: []string{
			"prepcast check --config /etc/prepcast/prepcast.yaml",
			"prepcast check --target difusor-3 --report /srv/prep/evidencia   # dated reports (Spanish) to file",
			"prepcast check --json | jq '.difusores[] | select(.passed | not)'",
		},
		run: cmdCheck})
}

// cmdCheck measures each difusor against the call's rules. It exits 0 when
// every difusor passes, 1 when any requirement fails, 2 on usage or config
// errors. It does not take the push lock.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	var only stringsFlag
	fs.Var(&only, "target", "check only this target (repeatable)")
	asJSON := fs.Bool("json", false, "print one JSON document (schema "+check.Schema+")")
	reportDir := fs.String("report", "", "write a dated report per difusor (Markdown and JSON) in this directory")
	langFlag := fs.String("lang", string(i18n.Default), "language of the reports: es or en")
	pubEnd := fs.String("publication-end", "", "end of the publication period, \"YYYY-MM-DDTHH:MM\" in the config's zone (default check.publication_end)")
	uploadTest := fs.Duration("upload-test", 0, "how long to measure the upload rate (default check.upload_test)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lang, err := i18n.Parse(*langFlag)
	if err != nil {
		return &usageError{"--lang: " + err.Error()}
	}
	if *uploadTest < 0 {
		return &usageError{"--upload-test must be positive"}
	}
	c, err := loadTargetsConfig(*cfgPath)
	if err != nil {
		return err
	}
	var end time.Time
	if *pubEnd != "" {
		end, err = time.ParseInLocation(config.TimeLayout, *pubEnd, c.Zone)
		if err != nil {
			return &usageError{fmt.Sprintf("--publication-end %q: write local time in zone %s as \"YYYY-MM-DDTHH:MM\"", *pubEnd, c.ZoneName)}
		}
	}
	selected, err := selectTargets(c, only)
	if err != nil {
		return err
	}
	store, _ := packager.OpenStore(c.StateDir) // no store yet: no estimate of the retained cuts
	log, closeLog, err := newLogger(c, stderr, false)
	if err != nil {
		return err
	}
	defer closeLog()
	res, err := check.Run(ctx, check.Options{
		Config: c, Targets: selected, Store: store, Log: log,
		UploadTest: *uploadTest, PublicationEnd: end,
		Passphrase: func(t *config.Target) ([]byte, error) {
			if t.PassphraseEnv == "" {
				return nil, nil
			}
			v, ok := os.LookupEnv(t.PassphraseEnv)
			if !ok {
				return nil, fmt.Errorf("environment variable %s (passphrase_env) is not set", t.PassphraseEnv)
			}
			return []byte(v), nil
		},
	})
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errInterrupted
	}
	if err := recordChecks(ctx, c, res); err != nil {
		fmt.Fprintf(stderr, "prepcast: %v (the results are printed but not kept)\n", err)
	}
	if *reportDir != "" {
		files, err := res.WriteReports(*reportDir, lang)
		if err != nil {
			return err
		}
		if !*asJSON {
			for _, f := range files {
				fmt.Fprintln(stdout, "report:", f)
			}
		}
	}
	if *asJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if !res.Passed {
		return errFailed
	}
	return nil
}

// recordChecks keeps each difusor's result in the state database, for
// status and the public list.
func recordChecks(ctx context.Context, c *config.Config, res *check.Result) error {
	db, err := state.Open(statePath(c))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, d := range res.Difusores {
		doc, _ := json.Marshal(check.DifusorDocument{Schema: check.Schema, Generated: res.Generated, Thresholds: res.Thresholds, Difusor: d})
		if err := db.RecordCheck(ctx, state.CheckRecord{Target: d.Name, At: d.Started, Passed: d.Passed, Fails: d.Fails, Warns: d.Warns, Report: string(doc)}); err != nil {
			return err
		}
	}
	return nil
}
