package clusterconf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
)

// orders maps policy names to the scheduler's queue orders.
var orders = map[string]scheduler.Order{
	"":            scheduler.OrderMultifactor,
	"multifactor": scheduler.OrderMultifactor,
	"fifo":        scheduler.OrderFIFO,
	"las":         scheduler.OrderLeastAttained,
	"gittins":     scheduler.OrderGittins,
}

// ToScheduler turns a validated configuration into the scheduler's
// Config. Unset settings stay zero, which the scheduler reads as its
// defaults; the LAS settings apply only under policies "las" and
// "gittins", as the --scheduler-las-* flags always have.
func ToScheduler(c *api.ClusterConfig) scheduler.Config {
	s := c.GetScheduler()
	out := scheduler.Config{
		MaxPlacementsPerCycle: int(s.GetMaxPlacementsPerCycle()),
		Order:                 orders[s.GetPolicy()],
		Strict:                s.GetStrictOrder(),
		ReserveDepth:          int(s.GetReserveDepth()),
		BackfillWindow:        seconds(s.GetBackfillWindowS()),
		DefaultTimeLimit:      seconds(s.GetDefaultTimeS()),
		Priority: scheduler.PriorityConfig{
			WeightAge:         s.GetWeightAge(),
			WeightFairShare:   s.GetWeightFairshare(),
			WeightQOS:         s.GetWeightQos(),
			WeightPartition:   s.GetWeightPartition(),
			WeightJobSize:     s.GetWeightJobsize(),
			MaxAge:            seconds(s.GetPriorityMaxAgeS()),
			FavorSmall:        s.GetPriorityFavorSmall(),
			SizeByService:     s.GetPrioritySizeByService(),
			FairShareHalfLife: seconds(s.GetFairshareHalfLifeS()),
			Shares:            s.GetAccountShares(),
		},
	}
	if s.GetReserveDepth() < 0 {
		out.ReserveDepth = -1
	}
	if out.Order == scheduler.OrderLeastAttained || out.Order == scheduler.OrderGittins {
		l := s.GetLas()
		out.LAS = scheduler.LASConfig{
			Thresholds:        l.GetThresholds(),
			PromoteFactor:     l.GetPromoteFactor(),
			MinRun:            time.Duration(l.GetMinRunMs()) * time.Millisecond,
			Patience:          time.Duration(l.GetPatienceMs()) * time.Millisecond,
			GittinsMargin:     l.GetGittinsMargin(),
			HistoryWindow:     int(l.GetHistoryWindow()),
			HistoryMinSamples: int(l.GetHistoryMinSamples()),
			SiblingWindow:     time.Duration(l.GetSiblingWindowMs()) * time.Millisecond,
		}
		if l.GetWithin() == "limit" {
			out.LAS.WithinQueue = scheduler.QueueShortestLimit
		}
		if l.GetNoPreempt() {
			out.LAS.Preempt = scheduler.PreemptNever
		}
	}
	for _, p := range c.GetPartitions() {
		if p.PriorityJobFactor > 0 {
			if out.Priority.PartitionPriority == nil {
				out.Priority.PartitionPriority = map[string]uint32{}
			}
			out.Priority.PartitionPriority[p.Name] = p.PriorityJobFactor
		}
	}
	if len(c.GetQos()) > 0 {
		out.QOS = map[string]scheduler.QOS{}
		for _, q := range c.GetQos() {
			out.QOS[q.Name] = scheduler.QOS{Priority: q.Priority, Preempt: q.Preempt,
				MaxGPUsPerUser: q.MaxGpusPerUser, MaxCPUsPerUser: q.MaxCpusPerUser, MaxJobsPerUser: q.MaxJobsPerUser}
		}
	}
	if len(c.GetSwitches()) > 0 {
		// Validated switches always build; a replica that was sent bad
		// ones schedules by the agents' own leaf switches.
		if net, err := scheduler.NewNetwork(c.GetSwitches()); err == nil {
			out.Network = net
		}
	}
	return out
}

// Override is one [scheduler] key set on the command line
// (--scheduler-KEY), which wins over the file.
type Override struct {
	Key, Value string
}

// ApplyOverrides sets c's [scheduler] keys from the command line and
// folds them into c's digest, so a changed flag is a changed
// configuration.
func ApplyOverrides(c *api.ClusterConfig, overrides []Override) error {
	if len(overrides) == 0 {
		return nil
	}
	if c.Scheduler == nil {
		c.Scheduler = &api.SchedulerSettings{}
	}
	h := sha256.New()
	h.Write([]byte(c.Sha256))
	for _, o := range overrides {
		if err := SetScheduler(c.Scheduler, o.Key, o.Value); err != nil {
			return fmt.Errorf("--scheduler-%s: %w", strings.ReplaceAll(o.Key, "_", "-"), err)
		}
		fmt.Fprintf(h, "\x00%s=%s", o.Key, o.Value)
	}
	c.Sha256 = hex.EncodeToString(h.Sum(nil))
	return nil
}
