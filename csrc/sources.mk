# The C core's sources, in layer order: the one list that csrc/Makefile,
# csrc/fuzz/Makefile and setup.py build from. One name a line after
# CORE_SRCS, each line but the last ending in a backslash.
CORE_SRCS = \
    util.c \
    guard.c \
    lock.c \
    tx.c \
    heap.c \
    entry.c \
    index.c \
    room.c \
    read.c \
    write.c \
    list.c \
    scan.c \
    verify.c \
    file.c \
    api.c \
    batch.c
