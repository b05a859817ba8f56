//go:build tools

// Package vk pins virtual-kubelet (the benchmark baseline) so `go build` of its main works here.
package vk

import _ "github.com/virtual-kubelet/virtual-kubelet/cmd/virtual-kubelet"
