/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The org.kirod.Auth1 bus API on top of the manager: Manager and Credential objects, caller checks,
 * LogControl1. The manager knows none of this; it reaches the bus side only through Manager.hooks. */
#pragma once

#include "authd-manager.h"

/* Registers the objects on m->bus, sets m->hooks and allocates m->bus_state. */
int bus_register(Manager *m);
