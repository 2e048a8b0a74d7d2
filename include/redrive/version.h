/* version: the one place the version number is written. */
#ifndef REDRIVE_VERSION_H
#define REDRIVE_VERSION_H

#define REDRIVE_VERSION "0.1.0"

#endif
