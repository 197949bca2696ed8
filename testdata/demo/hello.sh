#!/bin/sh
# Prints a greeting and the baked-in message; run at build time (RUN) and as
# the image's entrypoint.
echo "${GREETING:-hello} from $(id -un 2>/dev/null || id -u) on $(uname -m)"
cat /app/message.txt
