package config

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const examplePath = "../prepcast.example.yaml"

func TestExampleParses(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "/etc/prepcast")
	if err != nil {
		t.Fatalf("the example does not parse:\n%v", err)
	}
	mx, _ := time.LoadLocation("America/Mexico_City")
	if want := time.Date(2024, 6, 2, 20, 0, 0, 0, mx); !c.Schedule.Start.Equal(want) {
		t.Errorf("schedule.start = %v, want %v", c.Schedule.Start, want)
	}
	if want := time.Date(2024, 6, 3, 20, 0, 0, 0, mx); !c.Schedule.End.Equal(want) {
		t.Errorf("schedule.end = %v, want %v", c.Schedule.End, want)
	}
	if want := time.Date(2024, 6, 16, 23, 59, 0, 0, mx); !c.Schedule.HoldUntil.Equal(want) {
		t.Errorf("schedule.hold_until = %v, want %v", c.Schedule.HoldUntil, want)
	}
	if c.Schedule.Every != 10*time.Minute {
		t.Errorf("schedule.every = %v, want 10m", c.Schedule.Every)
	}
	if len(c.Targets) != 2 {
		t.Fatalf("the example has %d targets, want 2", len(c.Targets))
	}
	var kh, hk bool
	for _, tg := range c.Targets {
		kh = kh || tg.KnownHosts != ""
		hk = hk || (tg.HostKey != "" && tg.PassphraseEnv != "")
	}
	if !kh || !hk {
		t.Errorf("the example needs a target with known_hosts (%v) and one with host_key and passphrase_env (%v)", kh, hk)
	}
	if err := c.RequireTargets(); err != nil {
		t.Errorf("RequireTargets: %v", err)
	}
}

// TestExampleDocumentsEveryField checks that every field the config accepts
// appears in the example with a comment, so that the example cannot fall
// behind the code.
func TestExampleDocumentsEveryField(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}   // field path -> appears
	commented := map[string]bool{} // field path -> appears with a comment at least once
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path+"[]")
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				present[p] = true
				if k.HeadComment != "" || k.LineComment != "" || v.LineComment != "" || (i == 0 && n.HeadComment != "") {
					commented[p] = true
				}
				walk(v, p)
			}
		}
	}
	walk(&doc, "")

	schema := schemaPaths(reflect.TypeFor[rawConfig](), "")
	if len(schema) < 40 {
		t.Fatalf("schemaPaths found only %d fields: %v", len(schema), schema)
	}
	for _, p := range schema {
		switch {
		case !present[p]:
			t.Errorf("field %s is missing from %s", p, examplePath)
		case !commented[p]:
			t.Errorf("field %s has no comment in %s", p, examplePath)
		}
	}
	for p := range present {
		if !slices.Contains(schema, p) {
			t.Errorf("%s has field %s, which the config does not accept", examplePath, p)
		}
	}
}

// schemaPaths lists the field paths of the raw config type t, with "[]" for
// list items: "schedule.every", "targets[].name".
func schemaPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		p := join(prefix, name)
		out = append(out, p)
		switch {
		case f.Type == scalarType || f.Type == stringListType:
		case f.Type.Kind() == reflect.Struct:
			out = append(out, schemaPaths(f.Type, p)...)
		case f.Type.Kind() == reflect.Slice:
			out = append(out, schemaPaths(f.Type.Elem(), p+"[]")...)
		}
	}
	sort.Strings(out)
	return out
}

// TestSchemaMatchesConfig checks that every field of Config, its sections and
// Target has a yaml field of the same name (snake_case), and the reverse, so
// that a field added to one side is not forgotten on the other.
func TestSchemaMatchesConfig(t *testing.T) {
	// Config fields that are derived, not read from a field of their own.
	derived := map[string]bool{"Path": true, "ZoneName": true, "Agent": true}
	pairs := []struct{ cfg, raw reflect.Type }{
		{reflect.TypeFor[Config](), reflect.TypeFor[rawConfig]()},
		{reflect.TypeFor[Schedule](), reflect.TypeFor[rawSchedule]()},
		{reflect.TypeFor[Retention](), reflect.TypeFor[rawRetention]()},
		{reflect.TypeFor[Verify](), reflect.TypeFor[rawVerify]()},
		{reflect.TypeFor[Limits](), reflect.TypeFor[rawLimits]()},
		{reflect.TypeFor[Timeouts](), reflect.TypeFor[rawTimeouts]()},
		{reflect.TypeFor[Retry](), reflect.TypeFor[rawRetry]()},
		{reflect.TypeFor[Log](), reflect.TypeFor[rawLog]()},
		{reflect.TypeFor[Target](), reflect.TypeFor[rawTarget]()},
		{reflect.TypeFor[Check](), reflect.TypeFor[rawCheck]()},
	}
	for _, p := range pairs {
		var cfg, raw []string
		for i := range p.cfg.NumField() {
			if n := p.cfg.Field(i).Name; !derived[n] {
				cfg = append(cfg, n)
			}
		}
		for i := range p.raw.NumField() {
			raw = append(raw, p.raw.Field(i).Name)
		}
		if !slices.Equal(cfg, raw) {
			t.Errorf("%v has fields %v but %v has %v", p.cfg, cfg, p.raw, raw)
		}
	}
}
