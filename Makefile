# Native infrastructure (Kafka, PostgreSQL, Redis, OpenSearch on 127.0.0.1; data in .state/ or
# $HI_STATE_DIR). Everything is done by ops/stack.sh; PARTS limits it, e.g. `make up PARTS=postgres`.
PARTS ?=

.PHONY: install-infra up down status

install-infra:
	ops/stack.sh install $(PARTS)

up:
	ops/stack.sh up $(PARTS)

down:
	ops/stack.sh down $(PARTS)

status:
	ops/stack.sh status $(PARTS)
