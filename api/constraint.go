package api

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Constraint is a parsed -C/--constraint: node features joined by '&'
// (AND) and '|' (OR), read left to right as Slurm does, with one level of
// parentheses, counts (feature*N) and one bracketed set: "[a|b]" (every
// node has the same one of a and b) or "[a*2&b*4]" (counts of each).
type Constraint struct {
	text string
	top  *featExpr
	// bracket is the [...] set within top, nil without one.
	bracket *featExpr
}

// featExpr is a feature (name set) or a group of items joined by ops,
// read left to right.
type featExpr struct {
	name    string
	items   []*featExpr
	ops     []byte // ops[i] joins items[i] and items[i+1]: '&' or '|'
	bracket bool
	count   uint32 // feature*count; 0 none
}

// ConstraintError is a syntax error in a --constraint, at a 1-based
// position.
type ConstraintError struct {
	Expr string
	Pos  int
	Msg  string
}

func (e *ConstraintError) Error() string {
	return fmt.Sprintf("--constraint=%s: position %d: %s", e.Expr, e.Pos, e.Msg)
}

// constraintOps are the characters that are not part of a feature name.
const constraintOps = "&|,[]()*"

// ParseConstraint parses Slurm's --constraint syntax. As Slurm does, a
// ',' is read as '&'; parentheses do not nest; counts are not allowed
// inside parentheses; there is at most one bracketed set.
func ParseConstraint(s string) (*Constraint, error) {
	p := &constraintParser{s: s}
	top, err := p.list(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(s) {
		return nil, p.errf("%q has no opening partner", s[p.i])
	}
	c := &Constraint{text: s, top: top}
	for _, it := range top.items {
		if it.bracket {
			c.bracket = it
		}
	}
	return c, nil
}

type constraintParser struct {
	s        string
	i        int
	brackets int
}

func (p *constraintParser) errf(format string, args ...any) error {
	return &ConstraintError{Expr: p.s, Pos: p.i + 1, Msg: fmt.Sprintf(format, args...)}
}

// list parses items joined by operators until the end, or until the
// closing character of the enclosing group (depth 1: ')', 2: ']').
func (p *constraintParser) list(depth int) (*featExpr, error) {
	g := &featExpr{}
	for {
		it, err := p.item(depth)
		if err != nil {
			return nil, err
		}
		g.items = append(g.items, it)
		if p.i >= len(p.s) {
			return g, nil
		}
		switch c := p.s[p.i]; c {
		case '&', ',', '|':
			op := c
			if op == ',' {
				op = '&'
			}
			g.ops = append(g.ops, op)
			p.i++
			if p.i >= len(p.s) {
				p.i--
				return nil, p.errf("a feature must follow %q", c)
			}
		case ')', ']':
			return g, nil
		default:
			return nil, p.errf("unexpected %q", c)
		}
	}
}

// item parses a feature, a (group) or a [set], with an optional count.
func (p *constraintParser) item(depth int) (*featExpr, error) {
	if p.i >= len(p.s) {
		return nil, p.errf("a feature is missing")
	}
	var it *featExpr
	switch c := p.s[p.i]; c {
	case '(':
		if depth == 1 || depth == 3 {
			return nil, p.errf("parentheses do not nest")
		}
		open := p.i
		p.i++
		g, err := p.list(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			p.i = open
			return nil, p.errf("'(' is not closed")
		}
		p.i++
		it = g
	case '[':
		if depth != 0 {
			return nil, p.errf("a [...] set must not be inside parentheses or another set")
		}
		if p.brackets > 0 {
			return nil, p.errf("only one [...] set is allowed")
		}
		p.brackets++
		open := p.i
		p.i++
		g, err := p.list(2)
		if err != nil {
			return nil, err
		}
		if p.i >= len(p.s) || p.s[p.i] != ']' {
			p.i = open
			return nil, p.errf("'[' is not closed")
		}
		p.i++
		g.bracket = true
		return g, nil
	case '&', '|', ',', ')', ']', '*':
		return nil, p.errf("a feature must come before %q", c)
	default:
		start := p.i
		for p.i < len(p.s) && !strings.ContainsRune(constraintOps, rune(p.s[p.i])) {
			if c := p.s[p.i]; c == ' ' || c == '\t' || c == '\n' {
				return nil, p.errf("blank in a feature name")
			}
			p.i++
		}
		it = &featExpr{name: p.s[start:p.i]}
	}
	if p.i < len(p.s) && p.s[p.i] == '*' {
		if depth == 1 || depth == 3 {
			return nil, p.errf("a count is not allowed inside parentheses")
		}
		p.i++
		start := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		n, err := strconv.ParseUint(p.s[start:p.i], 10, 32)
		if err != nil || n == 0 {
			p.i = start
			return nil, p.errf("a count after '*' must be a positive number")
		}
		it.count = uint32(n)
	}
	return it, nil
}

// String returns the constraint as given.
func (c *Constraint) String() string { return c.text }

// HasCounts reports whether the constraint asks for node counts
// (feature*N), which place some nodes by one feature and others by another.
func (c *Constraint) HasCounts() bool {
	var walk func(e *featExpr) bool
	walk = func(e *featExpr) bool {
		return e.count != 0 || slices.ContainsFunc(e.items, walk)
	}
	return walk(c.top)
}

// FeatureCount is one feature*N of a --constraint: at least Nodes of the
// job's nodes have Feature.
type FeatureCount struct {
	Feature string
	Nodes   uint32
}

// Counts returns the constraint's node counts (feature*N) in the order
// given, nil without any.
func (c *Constraint) Counts() []FeatureCount {
	var out []FeatureCount
	var walk func(e *featExpr)
	walk = func(e *featExpr) {
		if e.count != 0 {
			out = append(out, FeatureCount{Feature: e.name, Nodes: e.count})
		}
		for _, it := range e.items {
			walk(it)
		}
	}
	walk(c.top)
	return out
}

// Choices is how many ways the constraint can be met by all of a job's
// nodes alike: the items of its matching-OR set, or 1 without one (a
// set of counts, [a*2&b*4], is not a choice).
func (c *Constraint) Choices() int {
	if c.bracket == nil || slices.Contains(c.bracket.ops, '&') {
		return 1
	}
	return len(c.bracket.items)
}

// Matches reports whether a node with the features has reports meets
// the constraint, with the bracketed set read as its choice-th item (a
// negative choice: any of them). A counted feature (feature*N) binds only
// some of the job's nodes, so it is met by every node here; Counts lists
// them for the placement to meet.
func (c *Constraint) Matches(has func(string) bool, choice int) bool {
	var eval func(e *featExpr) bool
	eval = func(e *featExpr) bool {
		if e.count != 0 {
			return true
		}
		if e.items == nil {
			return has(e.name)
		}
		if e.bracket && slices.Contains(e.ops, '|') {
			if choice >= 0 && choice < len(e.items) {
				return eval(e.items[choice])
			}
			return slices.ContainsFunc(e.items, eval)
		}
		ok := eval(e.items[0])
		for i, op := range e.ops {
			if op == '&' {
				ok = ok && eval(e.items[i+1])
			} else {
				ok = ok || eval(e.items[i+1])
			}
		}
		return ok
	}
	return eval(c.top)
}

// checkConstraint refuses a --constraint Loom cannot honour: bad syntax,
// and node counts where Slurm refuses them too (see checkCounts).
func checkConstraint(s *JobSpec) error {
	if s.Constraint == "" {
		return nil
	}
	c, err := ParseConstraint(s.Constraint)
	if err != nil {
		var ce *ConstraintError
		if errors.As(err, &ce) {
			return fieldErr("--constraint="+s.Constraint, "position %d: %s", ce.Pos, ce.Msg)
		}
		return err
	}
	if c.HasCounts() {
		return checkCounts(s, c)
	}
	if c.bracket != nil && slices.Contains(c.bracket.ops, '&') {
		return fieldErr("--constraint="+s.Constraint, "'&' inside [...] joins node counts: give each feature a count ([a*2&b*4]), or use [a|b] for a matching OR")
	}
	return nil
}

// checkCounts refuses node counts Slurm refuses: with '|' anywhere in
// the expression, on a (group) or [set] rather than one feature, a
// [...] set of '&' where a feature has no count, and counts that add up
// to more nodes than --nodes asks for at least.
func checkCounts(s *JobSpec, c *Constraint) error {
	field := "--constraint=" + s.Constraint
	var walk func(e *featExpr) error
	walk = func(e *featExpr) error {
		if e.count != 0 && e.items != nil {
			return fieldErr(field, "a count (*N) must follow a single feature name, not a group")
		}
		if slices.Contains(e.ops, '|') {
			return fieldErr(field, "node counts (feature*N) can only be joined by '&', not '|'")
		}
		if e.bracket && slices.ContainsFunc(e.items, func(it *featExpr) bool { return it.count == 0 }) {
			return fieldErr(field, "every feature of a [...] set of '&' needs a count ([a*2&b*4])")
		}
		for _, it := range e.items {
			if err := walk(it); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(c.top); err != nil {
		return err
	}
	var total uint64
	for _, fc := range c.Counts() {
		total += uint64(fc.Nodes)
	}
	if lo, _ := s.NodeRange(); total > uint64(lo) {
		return fieldErr(field, "the counts add up to %d nodes, more than --nodes=%d; ask for at least %d nodes", total, lo, total)
	}
	return nil
}

// maxFeatures bounds the features one node declares.
const maxFeatures = 256

// CheckFeatures refuses node features a --constraint could not name:
// empty ones, ones with an operator ("&|,[]()*") or a blank, and
// repeats.
func CheckFeatures(fs []string) error {
	if len(fs) > maxFeatures {
		return fmt.Errorf("%d features; at most %d", len(fs), maxFeatures)
	}
	for i, f := range fs {
		switch {
		case f == "":
			return errors.New("empty feature name")
		case strings.ContainsAny(f, constraintOps+" \t\n"):
			return fmt.Errorf("feature %q has one of %q or a blank", f, constraintOps)
		case slices.Contains(fs[:i], f):
			return fmt.Errorf("feature %q given twice", f)
		}
	}
	return nil
}

// GPUFeature is the short name of a GPU model as NVML reports it, which
// is the node feature and Slurm GRES type it gives: "NVIDIA H100 80GB
// HBM3" is "h100", "Tesla V100-SXM2-32GB" "v100", "NVIDIA GeForce RTX
// 4090" "rtx".
func GPUFeature(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	for _, vendor := range []string{"nvidia ", "tesla ", "geforce "} {
		m = strings.TrimPrefix(m, vendor)
	}
	if i := strings.IndexAny(m, " -_"); i >= 0 {
		m = m[:i]
	}
	return m
}

// AllFeatures returns the node's features: those its agent declares,
// then the short names of its GPU models, each once.
func (n *Node) AllFeatures() []string {
	out := slices.Clone(n.GetFeatures())
	for _, g := range n.GetTopology().GetGpus() {
		if f := GPUFeature(g.GetModel()); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// HasGPUType reports whether every GPU of the node is of the type (a GPU
// feature, compared without case), so that any GPUs the scheduler picks
// there are. A node without GPUs has no type.
func (n *Node) HasGPUType(t string) bool {
	gpus := n.GetTopology().GetGpus()
	for _, g := range gpus {
		if !strings.EqualFold(GPUFeature(g.GetModel()), t) {
			return false
		}
	}
	return len(gpus) > 0
}
