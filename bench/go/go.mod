// The Go peers of the weft benchmarks: standard library only, so building
// them never touches the network (bench/run.sh also sets GOPROXY=off).
module weft.bench/go

go 1.19
