module runplane.io/bench/openloop

go 1.26
