package learner

import (
	"math"
	"math/rand/v2"
)

// MLP is a two-layer perceptron, Pixels → Hidden (ReLU) → Classes with a
// softmax cross-entropy loss. Its parameters live in one flat slice so that
// the gradient is one buffer for AllReduce and the checkpoint is one array:
// W1 (Pixels×Hidden, row i holds pixel i's weights), b1 (Hidden),
// W2 (Hidden×Classes), b2 (Classes).
type MLP struct {
	Hidden int
	Params []float64
}

// NumParams returns the length of the parameter vector of an MLP with
// hidden units.
func NumParams(hidden int) int {
	return Pixels*hidden + hidden + hidden*Classes + Classes
}

// NewMLP returns an MLP with He-initialised weights drawn from rng and zero
// biases.
func NewMLP(hidden int, rng *rand.Rand) *MLP {
	m := &MLP{Hidden: hidden, Params: make([]float64, NumParams(hidden))}
	w1, _, w2, _ := m.split(m.Params)
	s1 := math.Sqrt(2.0 / Pixels)
	for i := range w1 {
		w1[i] = rng.NormFloat64() * s1
	}
	s2 := math.Sqrt(2.0 / float64(hidden))
	for i := range w2 {
		w2[i] = rng.NormFloat64() * s2
	}
	return m
}

// split cuts a parameter-shaped vector into the four tensors.
func (m *MLP) split(p []float64) (w1, b1, w2, b2 []float64) {
	h := m.Hidden
	w1, p = p[:Pixels*h], p[Pixels*h:]
	b1, p = p[:h], p[h:]
	w2, p = p[:h*Classes], p[h*Classes:]
	return w1, b1, w2, p[:Classes]
}

// scratch holds one sample's activations.
type scratch struct {
	h, dh  []float64 // pre-activation of the hidden layer and its gradient
	z      []float64 // logits, then probabilities
	hidden int
}

func newScratch(hidden int) *scratch {
	return &scratch{h: make([]float64, hidden), dh: make([]float64, hidden), z: make([]float64, Classes), hidden: hidden}
}

// inputScale maps a pixel byte to the network's input: intensity/255
// divided by MNIST's standard deviation (0.3081), so inputs have about unit
// variance. The mean is not subtracted, to keep the background at zero
// and the input sparse.
const inputScale = 1.0 / 255 / 0.3081

// forward computes the hidden pre-activations into s.h and the class
// probabilities into s.z. Background pixels are skipped: MNIST images are
// four-fifths zeros, and this is most of the work.
func (m *MLP) forward(img []byte, s *scratch) {
	w1, b1, w2, b2 := m.split(m.Params)
	h := s.h
	H := len(h)
	copy(h, b1)
	for i, px := range img {
		if px == 0 {
			continue
		}
		x := float64(px) * inputScale
		row := w1[i*H : i*H+H]
		for j := range row {
			h[j] += x * row[j]
		}
	}
	z := s.z
	copy(z, b2)
	for j, v := range h {
		if v <= 0 {
			continue
		}
		row := w2[j*Classes : j*Classes+Classes]
		for k := range row {
			z[k] += v * row[k]
		}
	}
	// Softmax, shifted by the maximum for stability.
	zmax := z[0]
	for _, v := range z[1:] {
		zmax = max(zmax, v)
	}
	var sum float64
	for k, v := range z {
		e := math.Exp(v - zmax)
		z[k] = e
		sum += e
	}
	for k := range z {
		z[k] /= sum
	}
}

// accumulate runs forward and backward for one example and adds its loss
// gradient to grad (parameter-shaped). It returns the example's loss and
// whether the prediction was right.
func (m *MLP) accumulate(img []byte, label uint8, grad []float64, s *scratch) (loss float64, correct bool) {
	m.forward(img, s)
	_, _, w2, _ := m.split(m.Params)
	gw1, gb1, gw2, gb2 := m.split(grad)
	z, h, dh := s.z, s.h, s.dh
	H := len(h)
	loss = -math.Log(max(z[label], 1e-300))
	correct = argmax(z) == int(label)
	z[label] -= 1 // dLoss/dlogits = p - onehot
	for k, d := range z {
		gb2[k] += d
	}
	for j, v := range h {
		if v <= 0 {
			dh[j] = 0
			continue
		}
		row := w2[j*Classes : j*Classes+Classes]
		grow := gw2[j*Classes : j*Classes+Classes]
		var back float64
		for k := range row {
			grow[k] += v * z[k]
			back += row[k] * z[k]
		}
		dh[j] = back
	}
	for j, d := range dh {
		gb1[j] += d
	}
	for i, px := range img {
		if px == 0 {
			continue
		}
		x := float64(px) * inputScale
		grow := gw1[i*H : i*H+H]
		for j := range grow {
			grow[j] += x * dh[j]
		}
	}
	return loss, correct
}

// Predict returns the most likely digit of img.
func (m *MLP) Predict(img []byte) int {
	s := newScratch(m.Hidden)
	m.forward(img, s)
	return argmax(s.z)
}

// evaluate sums the loss and counts the correct predictions over the
// examples idx of set.
func (m *MLP) evaluate(set *Set, idx []int) (lossSum float64, correct int) {
	s := newScratch(m.Hidden)
	for _, i := range idx {
		m.forward(set.Images[i], s)
		lossSum -= math.Log(max(s.z[set.Labels[i]], 1e-300))
		if argmax(s.z) == int(set.Labels[i]) {
			correct++
		}
	}
	return lossSum, correct
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
