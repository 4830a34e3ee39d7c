package main

// Temporary: pins module dependencies until the packages that use them land.
import (
	_ "github.com/panjf2000/gnet/v2/pkg/netpoll"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/valyala/bytebufferpool"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)
