// Command ptbench is pathtrace's benchmark suite (make bench): what tracing
// costs the datapath of the demo cluster, how fast events flow from the
// kernel through decode and stitch, start-up time, memory, replay.
package main
