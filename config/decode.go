package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The raw* types mirror the YAML file. Every leaf is a scalar (or a
// stringList) that keeps the text and line as written, so that conversion
// can tell "not set" from "set to zero" and report problems by field path.
// The yaml tags here are the config's schema: the shape check, the
// documentation test and the decoder all read them.

type rawConfig struct {
	Source     scalar       `yaml:"source"`
	StateDir   scalar       `yaml:"state_dir"`
	SigningKey scalar       `yaml:"signing_key"`
	Zone       scalar       `yaml:"zone"`
	Pointer    stringList   `yaml:"pointer"`
	Schedule   rawSchedule  `yaml:"schedule"`
	Retention  rawRetention `yaml:"retention"`
	Verify     rawVerify    `yaml:"verify"`
	Limits     rawLimits    `yaml:"limits"`
	MaxLag     scalar       `yaml:"max_lag"`
	Timeouts   rawTimeouts  `yaml:"timeouts"`
	Retry      rawRetry     `yaml:"retry"`
	Listen     scalar       `yaml:"listen"`
	Log        rawLog       `yaml:"log"`
	Report     rawReport    `yaml:"report"`
	Targets    []rawTarget  `yaml:"targets"`
	Check      rawCheck     `yaml:"check"`
}

type rawCheck struct {
	MinFreeDisk    scalar `yaml:"min_free_disk"`
	MinUploadRate  scalar `yaml:"min_upload_rate"`
	UploadTest     scalar `yaml:"upload_test"`
	PublicationEnd scalar `yaml:"publication_end"`
}

type rawReport struct {
	Out scalar `yaml:"out"`
}

type rawSchedule struct {
	Every     scalar `yaml:"every"`
	Start     scalar `yaml:"start"`
	End       scalar `yaml:"end"`
	HoldUntil scalar `yaml:"hold_until"`
}

type rawRetention struct {
	Cuts   scalar `yaml:"cuts"`
	Window scalar `yaml:"window"`
}

type rawVerify struct {
	Period       scalar `yaml:"period"`
	BytesPerPush scalar `yaml:"bytes_per_push"`
	FilesPerPush scalar `yaml:"files_per_push"`
	TimePerPush  scalar `yaml:"time_per_push"`
}

type rawLimits struct {
	Uplink          scalar `yaml:"uplink"`
	PerTarget       scalar `yaml:"per_target"`
	TargetsInFlight scalar `yaml:"targets_in_flight"`
	FilesInFlight   scalar `yaml:"files_in_flight"`
	WholeFiles      scalar `yaml:"whole_files"`
}

type rawTimeouts struct {
	Dial      scalar `yaml:"dial"`
	Operation scalar `yaml:"operation"`
	Keepalive scalar `yaml:"keepalive"`
	Cycle     scalar `yaml:"cycle"`
}

type rawRetry struct {
	Attempts scalar `yaml:"attempts"`
	Base     scalar `yaml:"base"`
	Max      scalar `yaml:"max"`
}

type rawLog struct {
	File  scalar `yaml:"file"`
	Level scalar `yaml:"level"`
}

type rawTarget struct {
	Name                  scalar `yaml:"name"`
	Address               scalar `yaml:"address"`
	User                  scalar `yaml:"user"`
	IdentityFile          scalar `yaml:"identity_file"`
	PassphraseEnv         scalar `yaml:"passphrase_env"`
	KnownHosts            scalar `yaml:"known_hosts"`
	HostKey               scalar `yaml:"host_key"`
	Root                  scalar `yaml:"root"`
	Limit                 scalar `yaml:"limit"`
	Mode                  scalar `yaml:"mode"`
	ApplyCommand          scalar `yaml:"apply_command"`
	URL                   scalar `yaml:"url"`
	FileMode              scalar `yaml:"file_mode"`
	DirMode               scalar `yaml:"dir_mode"`
	AllowNonAtomicReplace scalar `yaml:"allow_non_atomic_replace"`
	FsyncSessions         scalar `yaml:"fsync_sessions"`
	DisplayName           scalar `yaml:"display_name"`
	Logo                  scalar `yaml:"logo"`
	Contact               scalar `yaml:"contact"`
	Disabled              scalar `yaml:"disabled"`
}

// scalar is one YAML value as written. A null or empty value counts as not
// set. A value of the wrong kind (a list where a single value belongs) is
// reported by the shape check and then treated as not set.
type scalar struct {
	value string
	line  int
	ok    bool
}

// UnmarshalYAML records the node's text; it never fails, so that one bad
// value does not stop the decoder from reading the rest of the file.
func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = scalar{value: n.Value, line: n.Line, ok: n.Value != ""}
	}
	return nil
}

func (s scalar) set() bool { return s.ok }

// stringList is a single value or a list of values.
type stringList struct {
	items  []scalar
	single bool // written as one value, not a list
	ok     bool
}

// UnmarshalYAML accepts a scalar or a sequence of scalars; it never fails.
func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s scalar
		_ = s.UnmarshalYAML(n)
		*l = stringList{items: []scalar{s}, single: true, ok: s.set()}
	case yaml.SequenceNode:
		*l = stringList{items: make([]scalar, len(n.Content)), ok: true}
		for i, c := range n.Content {
			_ = l.items[i].UnmarshalYAML(resolve(c))
		}
	}
	return nil
}

var (
	scalarType     = reflect.TypeFor[scalar]()
	stringListType = reflect.TypeFor[stringList]()
)

// decodeRaw parses data into a rawConfig. Syntax errors are returned as is
// (they name the line). Problems of shape (unknown fields, a list where a
// single value belongs, a field set twice) are added to e with their field
// path and line; the returned rawConfig then holds everything else that
// could be read. A nil rawConfig means nothing more can be checked.
func decodeRaw(data []byte, e *collector) (*rawConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return &rawConfig{}, nil // an empty file: every required field is reported missing
	case err != nil:
		return nil, fmt.Errorf("syntax error: %w", err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("syntax error: %w", err)
	default:
		return nil, fmt.Errorf("syntax error: line %d: a second document starts here; a config is one YAML document, remove the \"---\"", next.Line)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return &rawConfig{}, nil
	}
	if r := resolve(root); r.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the config must be a mapping of fields (source:, state_dir:, targets: ...), not %s", r.Line, kindName(r))
	}
	sc := shapeChecker{e: e}
	if !sc.mapping(root, reflect.TypeFor[rawConfig](), "") {
		return nil, nil // the decoder would drop the whole file
	}

	raw := new(rawConfig)
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(raw)
	var te *yaml.TypeError
	switch {
	case err == nil:
	case errors.As(err, &te) && e.len() > 0:
		// The shape check has reported each of these with its field path.
	case e.len() > 0:
		return nil, nil
	default:
		return nil, fmt.Errorf("decode config: %w", err)
	}
	raw.Targets = realign(raw.Targets, sc.targetKept, e)
	return raw, nil
}

// shapeChecker walks the YAML tree along the raw* types and reports, with
// field paths and lines, everything the decoder would refuse or silently
// mangle.
type shapeChecker struct {
	e          *collector
	targetKept []bool           // per item of targets: whether the decoder keeps it
	memo       map[memoKey]bool // mappings checked (or being checked), and the result
}

type memoKey struct {
	n *yaml.Node
	t reflect.Type
}

// mapping checks that n is a mapping whose keys are the yaml fields of the
// struct type t. It returns false when the decoder will drop the whole
// mapping: when it is not a mapping, or when a key appears twice.
func (sc *shapeChecker) mapping(n *yaml.Node, t reflect.Type, path string) (kept bool) {
	n = resolve(n)
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		sc.e.add(path, "must be a mapping of fields (%s), not %s (line %d)", strings.Join(fieldNames(t), ", "), kindName(n), n.Line)
		return false
	}
	// A mapping reached again through an alias or a merge is checked once:
	// its problems are reported at the first place it is used, and nested
	// merges cannot make the check exponential.
	mk := memoKey{n, t}
	if kept, done := sc.memo[mk]; done {
		return kept
	}
	if sc.memo == nil {
		sc.memo = make(map[memoKey]bool)
	}
	sc.memo[mk] = true // also ends "<<" cycles
	defer func() { sc.memo[mk] = kept }()

	// Duplicate keys, compared as the decoder compares them.
	type key struct {
		kind  yaml.Kind
		value string
	}
	firstLine := make(map[key]int)
	dup := make(map[int]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if line, ok := firstLine[key{k.Kind, k.Value}]; ok {
			sc.e.add(join(path, keyName(k.Value)), "set twice (lines %d and %d); keep one", line, k.Line)
			dup[i] = true
			continue
		}
		firstLine[key{k.Kind, k.Value}] = k.Line
	}

	fields := fieldTypes(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		switch {
		case dup[i]:
			continue
		case isMerge(n.Content[i]):
			sc.merge(v, t, path)
			continue
		case k.Kind != yaml.ScalarNode:
			sc.e.add(join(path, fmt.Sprintf("<key at line %d>", k.Line)), "a field name must be a plain word, not %s", kindName(k))
			continue
		}
		field := join(path, keyName(k.Value))
		ft, known := fields[k.Value]
		if !known {
			sc.e.add(field, "unknown field at line %d%s; allowed here: %s", k.Line, suggest(k.Value, fieldNames(t)), strings.Join(fieldNames(t), ", "))
			continue
		}
		sc.value(v, ft, field)
	}
	return len(dup) == 0
}

// merge checks the value of a "<<" key: a mapping, an alias of one, or a
// list of those, whose fields are merged into the enclosing mapping.
func (sc *shapeChecker) merge(v *yaml.Node, t reflect.Type, path string) {
	v = resolve(v)
	srcs := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		srcs = v.Content
	}
	for _, s := range srcs {
		if r := resolve(s); r.Kind != yaml.MappingNode {
			sc.e.add(join(path, "<<"), "a merge (<<) needs a mapping or an alias of one (<<: *name), not %s (line %d)", kindName(r), r.Line)
			return
		}
		sc.mapping(s, t, path)
	}
}

// value checks one field's value against its raw type.
func (sc *shapeChecker) value(v *yaml.Node, t reflect.Type, path string) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	switch {
	case t == scalarType:
		if v.Kind != yaml.ScalarNode {
			sc.e.add(path, "must be a single value, not %s (line %d)", kindName(v), v.Line)
		}
	case t == stringListType:
		switch v.Kind {
		case yaml.ScalarNode:
		case yaml.SequenceNode:
			for i, c := range v.Content {
				if c = resolve(c); c.Kind != yaml.ScalarNode {
					sc.e.add(fmt.Sprintf("%s[%d]", path, i), "must be a single value, not %s (line %d)", kindName(c), c.Line)
				}
			}
		default:
			sc.e.add(path, "must be a value or a list of values, not %s (line %d)", kindName(v), v.Line)
		}
	case t.Kind() == reflect.Struct:
		sc.mapping(v, t, path)
	case t.Kind() == reflect.Slice:
		if v.Kind != yaml.SequenceNode {
			sc.e.add(path, "must be a list (each item starting with \"- \"), not %s (line %d)", kindName(v), v.Line)
			return
		}
		kept := make([]bool, len(v.Content))
		for i, c := range v.Content {
			item := fmt.Sprintf("%s[%d]", path, i)
			if r := resolve(c); isNull(r) {
				sc.e.add(item, "is empty (line %d); remove the lone \"-\" or fill in the item", r.Line)
				kept[i] = true // as a zero item
				continue
			}
			kept[i] = sc.mapping(c, t.Elem(), item)
		}
		sc.targetKept = kept
	}
}

// realign undoes the decoder's dropping of list items it could not decode
// (kept[i] is false), so that targets[i] in errors is item i of the file. A
// dropped item is replaced by a zero one whose errors are hidden: the shape
// check has reported what is wrong with it.
func realign(ts []rawTarget, kept []bool, e *collector) []rawTarget {
	if !slices.Contains(kept, false) {
		return ts
	}
	n := 0
	for _, k := range kept {
		if k {
			n++
		}
	}
	if n != len(ts) {
		e.add("targets", "could not be read; fix the errors above")
		return nil
	}
	out := make([]rawTarget, len(kept))
	j := 0
	for i, k := range kept {
		if k {
			out[i] = ts[j]
			j++
		} else {
			e.hide(fmt.Sprintf("targets[%d]", i))
		}
	}
	return out
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// isMerge reports whether k is a "<<" merge key, as the yaml decoder decides.
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "an empty value"
}

// keyName returns a key as it appears in a field path: quoted unless it is a
// plain word.
func keyName(k string) string {
	if k == "" || strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '<')
	}) {
		return strconv.Quote(k)
	}
	return k
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fieldTypes maps the yaml field names of struct type t to their types.
func fieldTypes(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if name := yamlName(f); name != "" {
			m[name] = f.Type
		}
	}
	return m
}

// fieldNames lists the yaml field names of struct type t in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// aliases maps words an operator may reach for to the field that means it.
var aliases = map[string]string{
	"host":        "address",
	"hostname":    "address",
	"port":        "address",
	"server":      "address",
	"username":    "user",
	"login":       "user",
	"key":         "identity_file",
	"identity":    "identity_file",
	"private_key": "identity_file",
	"ssh_key":     "identity_file",
	"passphrase":  "passphrase_env",
	"public_key":  "host_key",
	"fingerprint": "host_key",
	"path":        "root",
	"dir":         "root",
	"directory":   "root",
	"remote_dir":  "root",
	"rate":        "limit",
	"bandwidth":   "limit",
	"enabled":     "disabled",
	"interval":    "every",
	"period":      "every",
	"timezone":    "zone",
	"tz":          "zone",
	"state":       "state_dir",
	"store":       "state_dir",
	"results":     "source",
	"pointers":    "pointer",
	"target":      "targets",
	"difusores":   "targets",
}

// suggest returns ` (did you mean "x"?)` for the closest allowed name, if any
// is close enough.
func suggest(name string, allowed []string) string {
	lower := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	best := ""
	if slices.Contains(allowed, lower) {
		best = lower
	} else if a, ok := aliases[lower]; ok && slices.Contains(allowed, a) {
		best = a
	} else {
		bestDist := 3
		for _, a := range allowed {
			if d := editDistance(lower, a); d < bestDist {
				best, bestDist = a, d
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, capped at
// len(a)+len(b) for long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return len(a) + len(b)
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
