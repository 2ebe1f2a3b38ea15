// Package stitch joins decoded events into one Path per packet: it groups
// events by skb, pairs the first and last netfilter slots of a hook into a
// netfilter hop and a NAT hop, recognises VXLAN encapsulation and
// decapsulation, and decides the packet's verdict.
package stitch
