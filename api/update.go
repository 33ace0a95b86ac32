package api

// ApplyTo changes spec as r asks: each field r sets replaces spec's. The
// job id and any field r leaves unset are not touched.
func (r *UpdateJobRequest) ApplyTo(spec *JobSpec) {
	if r.TimeLimitS != nil {
		spec.TimeLimitS = *r.TimeLimitS
	}
	if r.Partition != nil {
		spec.Partition = *r.Partition
	}
	if r.Qos != nil {
		spec.Qos = *r.Qos
	}
	if r.NodesMin != nil {
		spec.NodesMin = *r.NodesMin
	}
	if r.NodesMax != nil {
		spec.NodesMax = *r.NodesMax
	}
	if r.Name != nil {
		spec.Name = *r.Name
	}
	if r.Comment != nil {
		spec.Comment = *r.Comment
	}
}

// ChangesResources reports whether r changes what a job gets or where it
// may run (time limit, partition, QoS, node count), rather than only how
// it is named and described.
func (r *UpdateJobRequest) ChangesResources() bool {
	return r.TimeLimitS != nil || r.Partition != nil || r.Qos != nil || r.NodesMin != nil || r.NodesMax != nil
}

// Empty reports whether r changes nothing.
func (r *UpdateJobRequest) Empty() bool {
	return !r.ChangesResources() && r.Name == nil && r.Comment == nil
}
