package scheduler

import (
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

// Default port range a node hands to ranks when its agent names none.
const (
	DefaultPortMin = api.DefaultPortMin
	DefaultPortMax = api.DefaultPortMax
)

// maxGPUsPerNode is what a node's free-GPU bitmask can hold; GPUs beyond
// it are not scheduled.
const maxGPUsPerNode = 64

// nodeInfo is what a cycle knows of one node that does not change as the
// cycle places gangs.
type nodeInfo struct {
	node      *api.Node
	leaf      int        // index into cycle.leaves
	gpus      []*api.GPU // bit i of a mask is gpus[i]
	healthy   uint64     // schedulable GPUs; 0 for a drained or down node
	bw        []float32  // GPU×GPU bandwidth, len(gpus)², lazily
	heldPorts map[uint32]bool
	// heldCores marks, by core, those live allocations hold
	// (Rank.cores); len node.cpus once any is held.
	heldCores []bool
	// schedulable: new work may land here (not drained or down).
	schedulable bool
	features    map[string]bool // lazily, for --constraint
}

// hasFeature reports whether the node has feature f (api.Node.AllFeatures).
func (ni *nodeInfo) hasFeature(f string) bool {
	if ni.features == nil {
		all := ni.node.AllFeatures()
		ni.features = make(map[string]bool, len(all))
		for _, x := range all {
			ni.features[x] = true
		}
	}
	return ni.features[f]
}

// state is the free capacity of every node at one moment; cloned to look
// into the future for reservations.
type state struct {
	free  []uint64 // free GPUs
	cpus  []uint32
	mem   []uint64
	ports []int // ports in use
	// gres is each node's free generic resources, len(cycle.gresNames)
	// per node (cycle.gresAt).
	gres []uint64
}

func (s *state) clone() *state {
	return &state{free: slices.Clone(s.free), cpus: slices.Clone(s.cpus), mem: slices.Clone(s.mem), ports: slices.Clone(s.ports),
		gres: slices.Clone(s.gres)}
}

// holding is a job that holds resources, and what it holds on each node.
type holding struct {
	job   *api.Job
	end   time.Time // when its resources are expected back (forever: unlimited)
	nodes []int
	masks []uint64
	cpus  []uint32
	mem   []uint64
	gpus  int
	gres  []uint64 // held on each of nodes (by cycle.gresIdx); nil for none
}

// cycle is one call of Schedule.
type cycle struct {
	v      *View
	now    time.Time
	cfg    *Config
	nodes  []*nodeInfo // ordered by top switch, leaf, name
	byName map[string]int
	leaves []leafInfo
	st     *state

	held         []*holding
	arrayRunning map[uint64]int
	parts        map[string][]int
	partTable    *api.PartitionTable // nil: agents' --partitions alone

	reservations []*reservation
	nodeRes      [][]*reservation // per node
	failMemo     map[shapeKey]failMemo
	// byFree[k] is the set of nodes with k free GPUs now (a bitset over
	// node indices), kept as the cycle places jobs; partBits the
	// partitions' node sets. They let placeOne find the best fit without
	// scanning every node.
	byFree     [][]uint64
	partBits   map[string][]uint64
	noFitMemo  map[shapeKey]bool
	releases   []release // lazily built, sorted by time
	relDirty   bool
	preempted  map[uint64]bool
	prio       prioState
	las        LASConfig      // with defaults, for OrderLeastAttained
	queues     map[uint64]int // LAS queue per job, computed once a cycle
	byNameUser map[string][]*api.Job
	// constraints holds each --constraint parsed once a cycle: an array's
	// tasks share one.
	constraints map[string]*api.Constraint
	resv        resvState // advance reservations (reservations.go)
	// gresNames are the generic resources some node has, sorted; gresIdx
	// their positions in state.gres.
	gresNames []string
	gresIdx   map[string]int
	// indices is each job's Gittins index (OrderGittins), computed once
	// a cycle.
	indices map[uint64]float64
}

type leafInfo struct {
	name string
	top  int
}

func newCycle(v *View, now time.Time, cfg *Config) *cycle {
	c := &cycle{v: v, now: now, cfg: cfg, byName: make(map[string]int, len(v.Nodes)),
		arrayRunning: map[uint64]int{}, parts: map[string][]int{}, failMemo: map[shapeKey]failMemo{}, noFitMemo: map[shapeKey]bool{},
		preempted: map[uint64]bool{}, queues: map[uint64]int{}, las: cfg.LAS.withDefaults(),
		partTable: api.NewPartitionTable(v.Partitions)}
	net := cfg.Network
	leafIdx := map[string]int{}
	topIdx := map[string]int{}
	var tops []string
	type keyed struct {
		top, leaf int
		n         *api.Node
	}
	ks := make([]keyed, 0, len(v.Nodes))
	for _, n := range v.Nodes {
		leaf, top := n.LeafSwitch, n.SpineSwitch
		if net != nil {
			leaf, top = net.Leaf(n.Name), ""
			if leaf != "" {
				top = net.Parent(leaf)
			}
		}
		ti, ok := topIdx[top]
		if !ok {
			ti = len(tops)
			topIdx[top] = ti
			tops = append(tops, top)
		}
		li, ok := leafIdx[leaf]
		if !ok {
			li = len(c.leaves)
			leafIdx[leaf] = li
			c.leaves = append(c.leaves, leafInfo{name: leaf, top: ti})
		}
		ks = append(ks, keyed{ti, li, n})
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if a.top != b.top {
			return strings.Compare(tops[a.top], tops[b.top])
		}
		if a.leaf != b.leaf {
			return strings.Compare(c.leaves[a.leaf].name, c.leaves[b.leaf].name)
		}
		return strings.Compare(a.n.Name, b.n.Name)
	})
	c.indexGres(v.Nodes)
	c.st = &state{free: make([]uint64, len(ks)), cpus: make([]uint32, len(ks)), mem: make([]uint64, len(ks)), ports: make([]int, len(ks)),
		gres: make([]uint64, len(ks)*len(c.gresNames))}
	c.nodes = make([]*nodeInfo, len(ks))
	c.nodeRes = make([][]*reservation, len(ks))
	for i, k := range ks {
		n := k.n
		ni := &nodeInfo{node: n, leaf: k.leaf, gpus: n.GetTopology().GetGpus(), schedulable: n.Schedulable()}
		if len(ni.gpus) > maxGPUsPerNode {
			ni.gpus = ni.gpus[:maxGPUsPerNode]
		}
		if ni.schedulable {
			for b, g := range ni.gpus {
				if g.Healthy {
					ni.healthy |= 1 << b
				}
			}
			c.st.cpus[i] = n.Cpus
			c.st.mem[i] = n.MemoryMb
			g := c.gresAt(c.st, i)
			for name, cnt := range n.Gres {
				g[c.gresIdx[name]] = cnt
			}
		}
		c.st.free[i] = ni.healthy
		c.nodes[i] = ni
		c.byName[n.Name] = i
	}
	for _, j := range v.Jobs {
		if j.HoldsResources() {
			c.hold(j)
		}
		if j.ArrayJobId != 0 && j.State.Active() {
			c.arrayRunning[j.ArrayJobId]++
		}
	}
	return c
}

// hold charges a live allocation to the state and remembers it for the
// reservation timeline and preemption.
func (c *cycle) hold(j *api.Job) {
	h := &holding{job: j, end: forever}
	a := j.Allocation
	at := map[int]int{}
	for _, r := range a.GetRanks() {
		i, ok := c.byName[r.Node]
		if !ok {
			continue
		}
		k, ok := at[i]
		if !ok {
			k = len(h.nodes)
			at[i] = k
			h.nodes = append(h.nodes, i)
			h.masks = append(h.masks, 0)
			h.cpus = append(h.cpus, 0)
			h.mem = append(h.mem, 0)
		}
		ni := c.nodes[i]
		for _, u := range r.GpuUuids {
			for b, g := range ni.gpus {
				if g.Uuid == u {
					h.masks[k] |= 1 << b
				}
			}
		}
		h.cpus[k] += r.Cpus
		ni.holdCores(r.Cores)
		h.mem[k] += r.MemMb
		if r.Port != 0 {
			c.st.ports[i]++
			ni.holdPort(r.Port)
		}
	}
	if a.GetMasterPort() != 0 && len(a.GetRanks()) > 0 {
		if i, ok := c.byName[a.Ranks[0].Node]; ok {
			c.st.ports[i]++
			c.nodes[i].holdPort(a.MasterPort)
		}
	}
	// Job steps take their ports from the same ranges (the FSM places
	// them); their GPUs and CPUs are the allocation's own.
	steps := api.Usage{}
	steps.AddStepPorts(j)
	for node, nu := range steps {
		if i, ok := c.byName[node]; ok {
			for p := range nu.Ports {
				c.st.ports[i]++
				c.nodes[i].holdPort(p)
			}
		}
	}
	for k, i := range h.nodes {
		c.st.free[i] &^= h.masks[k]
		c.st.cpus[i] -= min(h.cpus[k], c.st.cpus[i])
		c.st.mem[i] -= min(h.mem[k], c.st.mem[i])
		h.gpus += bits.OnesCount64(h.masks[k])
	}
	if j.State.Active() {
		lim := c.timeLimit(j)
		if lim != 0 {
			h.end = time.UnixMilli(j.StartUnixMs).Add(lim)
			if h.end.Before(c.now) {
				h.end = c.now // overdue: its agent is about to end it
			}
		}
	} else {
		h.end = c.now // being stopped (cancelled, requeued, preempted)
	}
	if h.gres = c.gresVector(a.GetGresPerNode()); h.gres != nil {
		for _, i := range h.nodes {
			subGres(c.gresAt(c.st, i), h.gres)
		}
	}
	c.held = append(c.held, h)
	c.relDirty = true
}

// indexGres gives each generic resource some node has a position in
// state.gres.
func (c *cycle) indexGres(nodes []*api.Node) {
	c.gresIdx = map[string]int{}
	for _, n := range nodes {
		for name := range n.Gres {
			if _, ok := c.gresIdx[name]; !ok {
				c.gresIdx[name] = 0
				c.gresNames = append(c.gresNames, name)
			}
		}
	}
	slices.Sort(c.gresNames)
	for k, name := range c.gresNames {
		c.gresIdx[name] = k
	}
}

// gresAt is node i's free generic resources in st, by cycle.gresIdx.
func (c *cycle) gresAt(st *state, i int) []uint64 {
	k := len(c.gresNames)
	return st.gres[i*k : (i+1)*k]
}

// gresVector turns counts by name into a vector by cycle.gresIdx, nil for
// none; a name no node has is left out.
func (c *cycle) gresVector(g map[string]uint64) []uint64 {
	v, _ := c.gresNeed(g)
	return v
}

// gresNeed is gresVector that also says whether every name is known.
func (c *cycle) gresNeed(g map[string]uint64) ([]uint64, bool) {
	if len(g) == 0 {
		return nil, true
	}
	known := true
	v := make([]uint64, len(c.gresNames))
	for name, n := range g {
		k, ok := c.gresIdx[name]
		if !ok {
			known = false
			continue
		}
		v[k] = n
	}
	return v, known
}

// subGres takes b from a, stopping at zero; addGres gives it back.
func subGres(a, b []uint64) {
	for k, n := range b {
		a[k] -= min(a[k], n)
	}
}

func addGres(a, b []uint64) {
	for k, n := range b {
		a[k] += n
	}
}

// gresFit reports whether free holds need.
func gresFit(free, need []uint64) bool {
	for k, n := range need {
		if free[k] < n {
			return false
		}
	}
	return true
}

func (ni *nodeInfo) holdPort(p uint32) {
	if ni.heldPorts == nil {
		ni.heldPorts = map[uint32]bool{}
	}
	ni.heldPorts[p] = true
}

// holdCores marks cores as held; a core beyond the node's is ignored (the
// FSM refuses plans that hold one).
func (ni *nodeInfo) holdCores(cores []uint32) {
	if ni.heldCores == nil && len(cores) > 0 {
		ni.heldCores = make([]bool, ni.node.Cpus)
	}
	for _, c := range cores {
		if c < uint32(len(ni.heldCores)) {
			ni.heldCores[c] = true
		}
	}
}

// takeCores takes n of the node's free cores for a rank with gpus: the
// lowest free on the NUMA node of its GPUs first (GPU.near_cores), then
// the lowest free others, as api.ChooseCores picks them. The scheduler
// counts CPUs before it places, so n are free unless an allocation holds
// cores beyond its count; the rank then gets what there is and the FSM
// refuses the plan.
func (ni *nodeInfo) takeCores(n uint32, gpus []*api.GPU) []uint32 {
	total := ni.node.Cpus
	if n == 0 || total == 0 {
		return nil
	}
	if ni.heldCores == nil {
		ni.heldCores = make([]bool, total)
	}
	var near []bool
	for _, g := range gpus {
		for _, c := range g.NearCores {
			if c < total {
				if near == nil {
					near = make([]bool, total)
				}
				near[c] = true
			}
		}
	}
	got := make([]uint32, 0, n)
	pick := func(wantNear bool) {
		for c := uint32(0); c < total && uint32(len(got)) < n; c++ {
			if !ni.heldCores[c] && (near != nil && near[c]) == wantNear {
				got = append(got, c)
			}
		}
	}
	if near != nil {
		pick(true)
	}
	pick(false)
	slices.Sort(got)
	ni.holdCores(got)
	return got
}

func (ni *nodeInfo) portRange() (lo, hi uint32) {
	lo, hi = ni.node.PortMin, ni.node.PortMax
	if lo == 0 || hi < lo {
		lo, hi = DefaultPortMin, DefaultPortMax
	}
	return lo, hi
}

func (ni *nodeInfo) takePort() uint32 {
	lo, hi := ni.portRange()
	for p := lo; p <= hi; p++ {
		if !ni.heldPorts[p] {
			ni.holdPort(p)
			return p
		}
	}
	return 0
}

// partition returns the indices of the nodes serving part, in node order.
func (c *cycle) partition(part string) []int {
	if idx, ok := c.parts[part]; ok {
		return idx
	}
	var idx []int
	for i, ni := range c.nodes {
		if c.partTable.Has(ni.node, part) {
			idx = append(idx, i)
		}
	}
	c.parts[part] = idx
	return idx
}

// candidates are the nodes r may use: its partition's, less those it
// excludes, and only those it lists when it lists some. The keys are r's
// exclusions and list joined (r.key's once set).
func (c *cycle) candidates(r *request, excludeKey, onlyKey string) []int {
	all := c.partition(r.part)
	if len(r.exclude) == 0 && len(r.only) == 0 && r.constraint == nil && r.gpuType == "" {
		return all
	}
	k := candidatesKey(r.part, excludeKey, onlyKey, r.featureKey())
	if idx, ok := c.parts[k]; ok {
		return idx
	}
	idx := make([]int, 0, len(all))
	for _, i := range all {
		if c.mayUse(r, i) {
			idx = append(idx, i)
		}
	}
	c.parts[k] = idx
	return idx
}

// candidatesKey names a set of candidate nodes in the cycle's caches.
func candidatesKey(part, excludeKey, onlyKey, featureKey string) string {
	return part + "\x00" + excludeKey + "\x00" + onlyKey + "\x00" + featureKey
}

// featureKey names the nodes r's constraint and GPU type allow, with the
// matching-OR choice it is being placed under.
func (r *request) featureKey() string {
	if r.constraint == nil && r.gpuType == "" {
		return ""
	}
	return r.key.features + "\x00" + strconv.Itoa(r.choice)
}

// mayUse reports whether node i is one of r's candidates.
func (c *cycle) mayUse(r *request, i int) bool {
	name := c.nodes[i].node.Name
	return c.partTable.Has(c.nodes[i].node, r.part) && !r.exclude[name] && (r.only == nil || r.only[name]) && c.hasFeatures(r, i)
}

// hasFeatures reports whether node i meets r's --constraint (under its
// current choice) and has GPUs of the type r asks for.
func (c *cycle) hasFeatures(r *request, i int) bool {
	ni := c.nodes[i]
	if r.gpuType != "" && !ni.node.HasGPUType(r.gpuType) {
		return false
	}
	return r.constraint == nil || r.constraint.Matches(ni.hasFeature, r.choice)
}

// nodesFor is candidates for a request whose key is set.
func (c *cycle) nodesFor(r *request) []int { return c.candidates(r, r.key.exclude, r.key.nodelist) }

// request is what a job asks for, worked out once per cycle.
type request struct {
	job        *api.Job
	part       string
	lo         uint32
	layouts    [][]api.NodeShape // layouts[k] spans lo+k nodes; nil when impossible
	exclusive  bool
	switches   int  // most leaves; 0 any
	impossible bool // no layout at all
	key        shapeKey
	exclude    map[string]bool // nodes the job may not use
	only       map[string]bool // the nodes the job must run on (--nodelist); nil: any
	constraint *api.Constraint // --constraint; nil: none
	// choice is the item of the constraint's matching-OR set ([a|b]) that
	// all nodes share while placeOn tries it; -1 (any) otherwise.
	choice int
	// counts are the constraint's feature*N, met by placeCounted; nil:
	// none.
	counts  []api.FeatureCount
	gpuType string   // every GPU of a node must be of this type; "": any
	gres    []uint64 // generic resources on each node, by cycle.gresIdx; nil: none
}

// shapeKey identifies requests that place identically, for the memo of
// failures within a cycle.
type shapeKey struct {
	part                            string
	lo, hi                          uint32
	tasks, tpn, gpn, gpt, gpus, cpt uint32
	mem, memPerCPU, memPerGPU       uint64
	cpg                             uint32
	exclusive                       bool
	switches                        int
	exclude                         string // --exclude, sorted and joined
	nodelist                        string // --nodelist, sorted and joined
	features                        string // --constraint and the GPU type
	gres                            string // --gres beyond gpu (api.FormatGres)
}

type failMemo struct {
	end  time.Time // the earliest end that failed
	kind failKind
}

func (c *cycle) request(j *api.Job) *request {
	s := j.Spec
	lo, hi := s.NodeRange()
	r := &request{job: j, part: s.PartitionOf(), lo: lo, exclusive: s.Exclusive, choice: -1}
	if s.Constraint != "" {
		r.constraint = c.constraint(s.Constraint)
		r.counts = r.constraint.Counts()
	}
	if s.GpuType != "" && (s.Gpus != 0 || s.GpusPerNode != 0 || s.GpusPerTask != 0) {
		r.gpuType = s.GpuType
	}
	if r.constraint != nil || r.gpuType != "" {
		r.key.features = s.Constraint + "\x00" + strings.ToLower(r.gpuType)
	}
	var excludeKey, onlyKey string
	if len(s.Exclude) > 0 {
		r.exclude = make(map[string]bool, len(s.Exclude))
		for _, n := range s.Exclude {
			r.exclude[n] = true
		}
		excludeKey = strings.Join(slices.Sorted(maps.Keys(r.exclude)), ",")
	}
	if len(s.Nodelist) > 0 {
		r.only = make(map[string]bool, len(s.Nodelist))
		for _, n := range s.Nodelist {
			r.only[n] = true
		}
		onlyKey = strings.Join(slices.Sorted(maps.Keys(r.only)), ",")
	}
	excludeKey, onlyKey = c.confine(r, excludeKey, onlyKey)
	if s.Switches > 0 {
		waited := c.now.Sub(time.UnixMilli(j.SubmitUnixMs))
		if s.SwitchesWaitS <= 0 || waited < time.Duration(s.SwitchesWaitS)*time.Second {
			r.switches = int(s.Switches)
		}
	}
	gres, known := c.gresNeed(s.GresPerNode)
	r.gres = gres
	nodes := len(c.candidates(r, excludeKey, onlyKey))
	if !known {
		nodes = 0 // no node has one of the generic resources asked for
	}
	r.impossible = true
	for n := lo; n <= hi && int(n) <= nodes; n++ {
		shapes, ok := s.Layout(n)
		if ok {
			r.impossible = false
		} else {
			shapes = nil
		}
		r.layouts = append(r.layouts, shapes)
	}
	r.key = shapeKey{part: r.part, lo: lo, hi: hi, tasks: s.Ntasks, tpn: s.NtasksPerNode, gpn: s.GpusPerNode,
		gpt: s.GpusPerTask, gpus: s.Gpus, cpt: s.CpusPerTask, mem: s.MemPerNodeMb, memPerCPU: s.MemPerCpuMb, memPerGPU: s.MemPerGpuMb,
		cpg: s.CpusPerGpu, exclusive: s.Exclusive, switches: r.switches, exclude: excludeKey, nodelist: onlyKey, features: r.key.features,
		gres: gresKey(s.GresPerNode)}
	return r
}

// gresKey is a request's generic resources for its shapeKey: "" for none,
// without the work of formatting them.
func gresKey(g map[string]uint64) string {
	if len(g) == 0 {
		return ""
	}
	return api.FormatGres(g)
}

// constraint parses a --constraint once a cycle. One that does not parse
// was refused at submit; one that somehow got in matches no node rather
// than every node.
func (c *cycle) constraint(expr string) *api.Constraint {
	if con, ok := c.constraints[expr]; ok {
		return con
	}
	con, err := api.ParseConstraint(expr)
	if err != nil {
		con, _ = api.ParseConstraint("\x00unparsable")
	}
	if c.constraints == nil {
		c.constraints = map[string]*api.Constraint{}
	}
	c.constraints[expr] = con
	return con
}

// failKind says why a placement failed.
type failKind int

const (
	failNone     failKind = iota
	failCapacity          // not enough free resources
	failTopology          // enough resources, but not within the allowed switches
)

// placement is where a gang would go: node, GPUs and shape per gang node.
type placement struct {
	nodes  []int
	masks  []uint64
	shapes []api.NodeShape
	leaves int
}

// usable returns what node i offers a job that would run until end: its
// free capacity less what reservations starting before end hold there.
// The generic resources are st's own slice unless a reservation takes
// some; callers must not change them.
func (c *cycle) usable(st *state, i int, end time.Time, honour bool) (uint64, uint32, uint64, []uint64) {
	m, cpus, mem, gres := st.free[i], st.cpus[i], st.mem[i], c.gresAt(st, i)
	if honour {
		copied := false
		for _, r := range c.nodeRes[i] {
			if r.start.Before(end) {
				k := slices.Index(r.nodes, i)
				m &^= r.masks[k]
				cpus -= min(cpus, r.cpus[k])
				mem -= min(mem, r.mem[k])
				if r.gres != nil {
					if !copied {
						gres, copied = slices.Clone(gres), true
					}
					subGres(gres, r.gres)
				}
			}
		}
	}
	return m, cpus, mem, gres
}

// fits reports whether node i, offering mask/cpus/mem/gres, can hold
// shape s of r, and how many GPUs it would have left.
func (c *cycle) fits(st *state, i int, m uint64, cpus uint32, mem uint64, gres []uint64, s api.NodeShape, r *request) (int, bool) {
	ni := c.nodes[i]
	exclusive := r.exclusive
	if !ni.schedulable {
		return 0, false
	}
	nfree := bits.OnesCount64(m)
	if nfree < int(s.GPUs) || cpus < s.CPUs || (ni.node.MemoryMb != 0 && mem < s.MemMB) || !gresFit(gres, r.gres) {
		return 0, false
	}
	lo, hi := ni.portRange()
	if int(hi-lo+1)-st.ports[i] < int(s.Tasks)+1 {
		return 0, false
	}
	if exclusive && (m != ni.healthy || cpus != ni.node.Cpus || st.ports[i] != 0) {
		return 0, false
	}
	return nfree - int(s.GPUs), true
}

// tryPlace finds a placement for r on the current state for a job that
// would run until end, honouring reservations or not.
func (c *cycle) tryPlace(r *request, end time.Time, honour bool) (*placement, failKind) {
	if honour {
		if f, ok := c.failMemo[r.key]; ok && !end.Before(f.end) {
			return nil, f.kind
		}
	}
	p, why := c.placeOn(c.st, r, end, honour)
	if p == nil && honour {
		c.failMemo[r.key] = failMemo{end: end, kind: why}
	}
	return p, why
}

// fitsUnreserved reports whether r would fit now if no reservation held
// anything back (to tell Reserved from Resources). Free capacity only
// shrinks during a cycle, so a shape that did not fit never will.
func (c *cycle) fitsUnreserved(r *request) bool {
	if c.noFitMemo[r.key] {
		return false
	}
	if p, _ := c.placeOn(c.st, r, forever, false); p != nil {
		return true
	}
	c.noFitMemo[r.key] = true
	return false
}

// placeOn places r on st: the fewest nodes first; within a node count, a
// single node by best fit, several nodes under the fewest switches. A
// constraint with a matching OR ([a|b]) is tried one item at a time, so
// that all of the gang's nodes share it.
func (c *cycle) placeOn(st *state, r *request, end time.Time, honour bool) (*placement, failKind) {
	if r.constraint == nil || r.constraint.Choices() == 1 {
		return c.placeOnNodes(st, r, end, honour)
	}
	defer func() { r.choice = -1 }()
	why := failCapacity
	for k := range r.constraint.Choices() {
		r.choice = k
		p, w := c.placeOnNodes(st, r, end, honour)
		if p != nil {
			return p, failNone
		}
		if w == failTopology {
			why = failTopology
		}
	}
	return nil, why
}

// placeOnNodes is placeOn among the nodes r may use as it stands.
func (c *cycle) placeOnNodes(st *state, r *request, end time.Time, honour bool) (*placement, failKind) {
	why := failCapacity
	for k, shapes := range r.layouts {
		if shapes == nil {
			continue
		}
		n := int(r.lo) + k
		if r.counts != nil {
			p, w := c.placeCounted(st, r, shapes, end, honour)
			if p != nil {
				return p, failNone
			}
			if w == failTopology {
				why = failTopology
			}
			continue
		}
		if n == 1 {
			if p := c.placeOne(st, r, shapes[0], end, honour); p != nil {
				return p, failNone
			}
			continue
		}
		p, w := c.placeMany(st, r, shapes, end, honour)
		if p != nil {
			return p, failNone
		}
		if w == failTopology {
			why = failTopology
		}
	}
	return nil, why
}

// placeOne picks the node that fits s with the fewest GPUs left over (so
// small jobs fill partly used nodes and whole nodes stay free), the first
// in node order among equals (so work packs into the same leaves).
func (c *cycle) placeOne(st *state, r *request, s api.NodeShape, end time.Time, honour bool) *placement {
	if st == c.st {
		return c.placeOneIndexed(r, s, end, honour)
	}
	best, bestLeft := -1, 1<<30
	need := int(s.GPUs)
	for _, i := range c.nodesFor(r) {
		// Reservations only take away: a node without enough free GPUs
		// cannot fit, whatever it has reserved.
		if bits.OnesCount64(st.free[i]) < need || !c.nodes[i].schedulable {
			continue
		}
		m, cpus, mem, gres := c.usable(st, i, end, honour)
		left, ok := c.fits(st, i, m, cpus, mem, gres, s, r)
		if !ok || left >= bestLeft {
			continue
		}
		best, bestLeft = i, left
		if left == 0 {
			break
		}
	}
	if best < 0 {
		return nil
	}
	return c.single(st, best, r, s, end, honour)
}

func (c *cycle) single(st *state, i int, r *request, s api.NodeShape, end time.Time, honour bool) *placement {
	m, _, _, _ := c.usable(st, i, end, honour)
	return &placement{nodes: []int{i}, masks: []uint64{c.chooseGPUs(i, m, int(s.GPUs), r.exclusive)},
		shapes: []api.NodeShape{s}, leaves: 1}
}

// placeOneIndexed is placeOne on the cycle's own state, walking the nodes
// by free-GPU count from the smallest that could fit: the first node that
// fits is the best fit by free GPUs.
func (c *cycle) placeOneIndexed(r *request, s api.NodeShape, end time.Time, honour bool) *placement {
	if c.byFree == nil {
		c.byFree = make([][]uint64, maxGPUsPerNode+1)
		words := (len(c.nodes) + 63) / 64
		for k := range c.byFree {
			c.byFree[k] = make([]uint64, words)
		}
		for i := range c.nodes {
			k := bits.OnesCount64(c.st.free[i])
			c.byFree[k][i/64] |= 1 << (i % 64)
		}
		c.partBits = map[string][]uint64{}
	}
	// Keyed like candidates: jobs of one partition may exclude or list
	// nodes.
	bitsKey := candidatesKey(r.part, r.key.exclude, r.key.nodelist, r.featureKey())
	pb, ok := c.partBits[bitsKey]
	if !ok {
		pb = make([]uint64, (len(c.nodes)+63)/64)
		for _, i := range c.nodesFor(r) {
			pb[i/64] |= 1 << (i % 64)
		}
		c.partBits[bitsKey] = pb
	}
	for k := int(s.GPUs); k <= maxGPUsPerNode; k++ {
		for w, set := range c.byFree[k] {
			for x := set & pb[w]; x != 0; x &= x - 1 {
				i := w*64 + bits.TrailingZeros64(x)
				if !c.nodes[i].schedulable {
					continue
				}
				m, cpus, mem, gres := c.usable(c.st, i, end, honour)
				if _, ok := c.fits(c.st, i, m, cpus, mem, gres, s, r); ok {
					return c.single(c.st, i, r, s, end, honour)
				}
			}
		}
	}
	return nil
}

// setFree changes node i's free GPUs in the state and the index.
func (c *cycle) setFree(i int, m uint64) {
	if c.byFree != nil {
		c.byFree[bits.OnesCount64(c.st.free[i])][i/64] &^= 1 << (i % 64)
		c.byFree[bits.OnesCount64(m)][i/64] |= 1 << (i % 64)
	}
	c.st.free[i] = m
}

// placeMany places a gang over len(shapes) nodes: within one leaf if one
// can hold it (the leaf that fits most tightly), else within one top
// switch using the fewest leaves, else over the fewest leaves anywhere.
func (c *cycle) placeMany(st *state, r *request, shapes []api.NodeShape, end time.Time, honour bool) (*placement, failKind) {
	n := len(shapes)
	type cand struct {
		i, left int
		m       uint64
	}
	byLeaf := map[int][]cand{}
	total := 0
	for _, i := range c.nodesFor(r) {
		if bits.OnesCount64(st.free[i]) < int(shapes[0].GPUs) || !c.nodes[i].schedulable {
			continue
		}
		m, cpus, mem, gres := c.usable(st, i, end, honour)
		left, ok := c.fits(st, i, m, cpus, mem, gres, shapes[0], r)
		if !ok {
			continue
		}
		byLeaf[c.nodes[i].leaf] = append(byLeaf[c.nodes[i].leaf], cand{i, left, m})
		total++
	}
	if total < n {
		return nil, failCapacity
	}
	leaves := make([]int, 0, len(byLeaf))
	for l := range byLeaf {
		leaves = append(leaves, l)
	}
	slices.Sort(leaves)
	// The chosen leaves, in the order their nodes are taken.
	var chosen []int
	bestFit := -1
	for _, l := range leaves {
		if cnt := len(byLeaf[l]); cnt >= n && (bestFit < 0 || cnt < len(byLeaf[bestFit])) {
			bestFit = l
		}
	}
	if bestFit >= 0 {
		chosen = []int{bestFit}
	} else {
		// Fewest leaves: per top switch, take its leaves largest first.
		byTop := map[int][]int{}
		for _, l := range leaves {
			byTop[c.leaves[l].top] = append(byTop[c.leaves[l].top], l)
		}
		desc := func(ls []int) []int {
			ls = slices.Clone(ls)
			slices.SortStableFunc(ls, func(a, b int) int { return len(byLeaf[b]) - len(byLeaf[a]) })
			return ls
		}
		need := func(ls []int) ([]int, bool) {
			got := 0
			for k, l := range ls {
				got += len(byLeaf[l])
				if got >= n {
					return ls[:k+1], true
				}
			}
			return ls, false
		}
		tops := make([]int, 0, len(byTop))
		for t := range byTop {
			tops = append(tops, t)
		}
		slices.Sort(tops)
		for _, t := range tops {
			if ls, ok := need(desc(byTop[t])); ok && (chosen == nil || len(ls) < len(chosen)) {
				chosen = ls
			}
		}
		if chosen == nil {
			chosen, _ = need(desc(leaves))
		}
	}
	if r.switches > 0 && len(chosen) > r.switches {
		return nil, failTopology
	}
	p := &placement{leaves: len(chosen)}
	for _, l := range chosen {
		cs := byLeaf[l]
		slices.SortStableFunc(cs, func(a, b cand) int { return a.left - b.left })
		for _, cd := range cs {
			if len(p.nodes) == n {
				break
			}
			s := shapes[len(p.nodes)]
			p.nodes = append(p.nodes, cd.i)
			p.masks = append(p.masks, c.chooseGPUs(cd.i, cd.m, int(s.GPUs), r.exclusive))
			p.shapes = append(p.shapes, s)
		}
	}
	return p, failNone
}

// take builds the allocation for a placement and charges the state. When
// a node's GPUs divide evenly among its ranks each rank gets its own
// share; otherwise every rank on the node sees all of the node's GPUs.
func (c *cycle) take(j *api.Job, r *request, p *placement, end time.Time) *api.Allocation {
	a := &api.Allocation{JobId: j.Id}
	cpt := max(j.Spec.CpusPerTask, 1)
	h := &holding{job: j, end: end, gres: r.gres}
	if len(j.Spec.GresPerNode) > 0 {
		a.GresPerNode = maps.Clone(j.Spec.GresPerNode)
	}
	rank := uint32(0)
	for k, i := range p.nodes {
		s := p.shapes[k]
		ni := c.nodes[i]
		mask := p.masks[k]
		cpus, mem := s.CPUs, s.MemMB
		if r.exclusive {
			cpus, mem = c.st.cpus[i], c.st.mem[i]
		}
		c.setFree(i, c.st.free[i]&^mask)
		c.st.cpus[i] -= min(cpus, c.st.cpus[i])
		c.st.mem[i] -= min(mem, c.st.mem[i])
		c.st.ports[i] += int(s.Tasks)
		if r.gres != nil {
			subGres(c.gresAt(c.st, i), r.gres)
		}
		h.nodes = append(h.nodes, i)
		h.masks = append(h.masks, mask)
		h.cpus = append(h.cpus, cpus)
		h.mem = append(h.mem, mem)
		h.gpus += bits.OnesCount64(mask)
		var gpus []*api.GPU
		for b := mask; b != 0; b &= b - 1 {
			gpus = append(gpus, ni.gpus[bits.TrailingZeros64(b)])
		}
		a.Nodes = append(a.Nodes, ni.node.Name)
		// CPUs beyond the tasks' own (--exclusive, --cpus-per-gpu) are
		// shared out among the node's ranks, the first ones one more.
		extra := cpus - min(cpus, s.Tasks*cpt)
		first := len(a.Ranks)
		for local := uint32(0); local < s.Tasks; local++ {
			rk := &api.Rank{
				Rank: rank, Node: ni.node.Name, LocalRank: local, LocalSize: s.Tasks,
				NodeIndex: uint32(k), Cpus: cpt + extra/s.Tasks, Port: ni.takePort(),
			}
			if local < extra%s.Tasks {
				rk.Cpus++
			}
			if local == 0 {
				rk.MemMb = mem // the node's memory is charged once, to its first rank
			}
			share := gpus
			if s.Tasks > 0 && len(gpus) > 0 && uint32(len(gpus))%s.Tasks == 0 {
				per := uint32(len(gpus)) / s.Tasks
				share = gpus[local*per : (local+1)*per]
			}
			for _, g := range share {
				rk.GpuUuids = append(rk.GpuUuids, g.Uuid)
				rk.GpuIndexes = append(rk.GpuIndexes, g.Index)
			}
			a.Ranks = append(a.Ranks, rk)
			rank++
		}
		for _, rk := range a.Ranks[first:] {
			var near []*api.GPU
			for _, g := range gpus {
				if slices.Contains(rk.GpuUuids, g.Uuid) {
					near = append(near, g)
				}
			}
			rk.Cores = ni.takeCores(rk.Cpus, near)
		}
	}
	master := c.nodes[p.nodes[0]]
	a.MasterAddr = hostOf(master.node.Address)
	a.MasterPort = master.takePort()
	c.st.ports[p.nodes[0]]++
	c.held = append(c.held, h)
	c.relDirty = true
	return a
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}
