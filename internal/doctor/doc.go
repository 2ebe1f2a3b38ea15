// Package doctor builds the node report behind `pathtrace doctor`: kernel and
// tracing facilities, modules, sysctls, kube-proxy mode and overlay/bridge
// devices of one network namespace, each with a status, a meaning and a manual check.
package doctor
