package cli

import (
	"fmt"
	"sort"
	"strings"
)

// argKind says whether an option takes a value.
type argKind int

const (
	noArg       argKind = iota // --exclusive
	requiredArg                // --time=1:00, --time 1:00, -t1:00, -t 1:00
	optionalArg                // --nice or --nice=10 (never from the next word)
)

// option is one command-line option in getopt_long's style: a long name,
// an optional one-letter short name, and what to do with its value.
type option struct {
	long  string
	short byte // 0 when there is none
	arg   argKind
	set   func(value string) error
	help  string // one line for --help; empty hides the option
	meta  string // the value's name in --help, e.g. "N[-M]"
}

// optUse is one occurrence of an option in the arguments.
type optUse struct {
	opt   *option
	value string
}

// display is the option and value as error messages show them,
// "--time=abc" whatever form the user typed.
func (u optUse) display() string {
	if u.opt.arg == noArg || (u.opt.arg == optionalArg && u.value == "") {
		return "--" + u.opt.long
	}
	return "--" + u.opt.long + "=" + u.value
}

// apply runs the option's setter and names the option in any error.
func (u optUse) apply() error {
	if err := u.opt.set(u.value); err != nil {
		return fmt.Errorf("%s: %w", u.display(), err)
	}
	return nil
}

// usageError is a malformed command line (unknown option, missing value).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parseConfig tunes parseArgs for the caller.
type parseConfig struct {
	// stopAtArg ends option parsing at the first non-option argument
	// (sbatch: everything after the script name belongs to the script).
	stopAtArg bool
	// unknown, when set, receives unknown options instead of failing; the
	// option and the non-option words after it are skipped (#SBATCH lines
	// in Slurm scripts written for other sites).
	unknown func(name string)
}

// parseArgs splits args into option uses, in order, and positional
// arguments, as getopt_long does: "--opt=v", "--opt v", "-o v", "-ov",
// clustered short flags "-vh", unique prefixes of long names, and "--" to
// end the options.
func parseArgs(opts []*option, args []string, cfg parseConfig) ([]optUse, []string, error) {
	var uses []optUse
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return uses, append(pos, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o, err := lookupLong(opts, name)
			if err != nil {
				if _, unknown := err.(*unknownOptionError); unknown && cfg.unknown != nil {
					cfg.unknown("--" + name)
					for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !hasVal {
						i++
					}
					continue
				}
				return nil, nil, err
			}
			switch o.arg {
			case noArg:
				if hasVal {
					return nil, nil, &usageError{fmt.Sprintf("option '--%s' doesn't allow an argument", o.long)}
				}
			case requiredArg:
				if !hasVal {
					if i+1 >= len(args) {
						return nil, nil, &usageError{fmt.Sprintf("option '--%s' requires an argument", o.long)}
					}
					i++
					val = args[i]
				}
			}
			uses = append(uses, optUse{o, val})
		case len(a) > 1 && a[0] == '-':
			// A cluster of short options; one that takes a value takes
			// the rest of the word or the next word.
			for j := 1; j < len(a); j++ {
				o := lookupShort(opts, a[j])
				if o == nil {
					if cfg.unknown != nil {
						cfg.unknown("-" + string(a[j]))
						for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
							i++
						}
						break
					}
					return nil, nil, &unknownOptionError{"-" + string(a[j])}
				}
				if o.arg == noArg {
					uses = append(uses, optUse{o, ""})
					continue
				}
				val := a[j+1:]
				if val == "" && o.arg == requiredArg {
					if i+1 >= len(args) {
						return nil, nil, &usageError{fmt.Sprintf("option requires an argument -- '%c'", a[j])}
					}
					i++
					val = args[i]
				}
				uses = append(uses, optUse{o, val})
				break
			}
		default:
			if cfg.stopAtArg {
				return uses, append(pos, args[i:]...), nil
			}
			pos = append(pos, a)
		}
	}
	return uses, pos, nil
}

// unknownOptionError is an option no table entry matches.
type unknownOptionError struct{ name string }

func (e *unknownOptionError) Error() string {
	return fmt.Sprintf("unrecognized option '%s'", e.name)
}

// lookupLong finds a long option by exact name or unique prefix.
func lookupLong(opts []*option, name string) (*option, error) {
	var matches []*option
	for _, o := range opts {
		if o.long == name {
			return o, nil
		}
		if name != "" && strings.HasPrefix(o.long, name) {
			matches = append(matches, o)
		}
	}
	switch len(matches) {
	case 0:
		return nil, &unknownOptionError{"--" + name}
	case 1:
		return matches[0], nil
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = "--" + m.long
	}
	sort.Strings(names)
	return nil, &usageError{fmt.Sprintf("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(names, " "))}
}

func lookupShort(opts []*option, c byte) *option {
	for _, o := range opts {
		if o.short == c {
			return o
		}
	}
	return nil
}

// parseAndApply parses args and applies every option in order, for
// commands whose options need no second pass.
func parseAndApply(opts []*option, args []string) ([]string, error) {
	uses, pos, err := parseArgs(opts, args, parseConfig{})
	if err != nil {
		return nil, err
	}
	for _, u := range uses {
		if err := u.apply(); err != nil {
			return nil, err
		}
	}
	return pos, nil
}

// writeOptionHelp prints the options' help lines, aligned.
func writeOptionHelp(b *strings.Builder, opts []*option) {
	type line struct{ flags, help string }
	var lines []line
	width := 0
	for _, o := range opts {
		if o.help == "" {
			continue
		}
		f := "    "
		if o.short != 0 {
			f = "-" + string(o.short) + ", "
		}
		f += "--" + o.long
		switch o.arg {
		case requiredArg:
			f += "=" + o.meta
		case optionalArg:
			f += "[=" + o.meta + "]"
		}
		lines = append(lines, line{f, o.help})
		width = max(width, len(f))
	}
	for _, l := range lines {
		fmt.Fprintf(b, "  %-*s  %s\n", width, l.flags, l.help)
	}
}

// Setters shared by the commands.

func setString(p *string) func(string) error {
	return func(v string) error { *p = v; return nil }
}

func setBool(p *bool, to bool) func(string) error {
	return func(string) error { *p = to; return nil }
}

// setOptBool sets an optional (proto3 optional) boolean.
func setOptBool(p **bool, to bool) func(string) error {
	return func(string) error { *p = &to; return nil }
}

// appendList adds the comma-separated items of v to *p.
func appendList(p *[]string) func(string) error {
	return func(v string) error {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*p = append(*p, s)
			}
		}
		return nil
	}
}
