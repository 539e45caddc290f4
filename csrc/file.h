/*
 * file.h - the file of a dict: create, attach, validate, take over,
 * remove, and the handle's life. Its functions are the public ones of
 * shmdict.h (sd_open, sd_close, sd_remove, sd_creator_alive, the handle's
 * setters and getters); this header names the unit and what it uses.
 */
#ifndef SHMDICT_FILE_H
#define SHMDICT_FILE_H

#include "core.h"

#endif /* SHMDICT_FILE_H */
