// Package train is `loom bench train`: it runs the MNIST example's own
// benchmark, `mnist bench`, with the same flags, and passes its output and
// exit status through. The benchmark lives with the example so that loom
// does not link the example learner or its data.
package train
