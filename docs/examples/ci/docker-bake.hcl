# The bake recipe (docs/ci.md): docker buildx bake [--push | --load]
#   TAG=registry.example/app:1 docker buildx bake --push
#   TAG=registry.example/app:2 SQUASH_MODE=base SQUASH_SPLIT=deps \
#     CACHE=registry.example/app:buildcache docker buildx bake --push
# SQUASH_FRONTEND, if set, replaces the Dockerfile's `# syntax=` image (a mirror, a digest)
# through BuildKit's BUILDKIT_SYNTAX build argument.

variable "TAG" {
  default = "app:latest"
}

variable "BASE" {
  default = "debian:bookworm-slim"
}

# The squash mode (full, base, off) and a stage to split the squash at (squash-split,
# docs/ci.md "Keeping the cache"), e.g. "deps". Empty: not passed, so the Dockerfile's own
# `# squash=` and `# squash-split=` lines decide (a build argument would win over them).
variable "SQUASH_MODE" {
  default = ""
}

variable "SQUASH_SPLIT" {
  default = ""
}

# A registry reference for the build cache (e.g. registry.example/app:buildcache): imported
# from it and exported to it with mode=max, which keeps every step (docs/ci.md). Empty: none.
variable "CACHE" {
  default = ""
}

variable "SQUASH_FRONTEND" {
  default = ""
}

group "default" {
  targets = ["app"]
}

target "app" {
  context    = "."
  dockerfile = "Dockerfile"
  tags       = [TAG]
  cache-from = notequal(CACHE, "") ? ["type=registry,ref=${CACHE}"] : []
  cache-to   = notequal(CACHE, "") ? ["type=registry,ref=${CACHE},mode=max"] : []
  args = {
    BASE            = BASE
    SQUASH_MODE     = notequal(SQUASH_MODE, "") ? SQUASH_MODE : null
    SQUASH_SPLIT    = notequal(SQUASH_SPLIT, "") ? SQUASH_SPLIT : null
    BUILDKIT_SYNTAX = notequal(SQUASH_FRONTEND, "") ? SQUASH_FRONTEND : null
  }
}
