################################################################################
#
# aergo
#
################################################################################

# The workspace this external tree lives in, built as a local package.
AERGO_VERSION = 0.1.0
AERGO_SITE = $(BR2_EXTERNAL_AERGO_PATH)/..
AERGO_SITE_METHOD = local
AERGO_LICENSE = Apache-2.0
AERGO_DEPENDENCIES = rocksdb host-clang

# Buildroot vendors the crates of downloaded cargo packages; a local package is rsynced instead, so
# the crates named by Cargo.lock are vendored here, once, into the download directory (the only step
# that needs the network), and the build itself runs --offline --locked against them.
AERGO_VENDOR_DIR = $(AERGO_DL_DIR)/vendor
define AERGO_VENDOR_CRATES
	mkdir -p $(AERGO_DL_DIR)
	cd $(@D) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		$(HOST_DIR)/bin/cargo vendor --locked --versioned-dirs $(AERGO_VENDOR_DIR) > /dev/null
	mkdir -p $(@D)/.cargo
	printf '[source.crates-io]\nreplace-with = "vendored"\n\n[source.vendored]\ndirectory = "%s"\n' \
		$(AERGO_VENDOR_DIR) > $(@D)/.cargo/config.toml
endef
AERGO_POST_RSYNC_HOOKS += AERGO_VENDOR_CRATES

# librocksdb-sys links the target's RocksDB instead of compiling its own; bindgen uses host-clang.
AERGO_CARGO_ENV = \
	ROCKSDB_LIB_DIR=$(STAGING_DIR)/usr/lib \
	ROCKSDB_INCLUDE_DIR=$(STAGING_DIR)/usr/include \
	LIBCLANG_PATH=$(HOST_DIR)/lib \
	BINDGEN_EXTRA_CLANG_ARGS="--sysroot=$(STAGING_DIR)"

AERGO_CARGO_BUILD_OPTS = --workspace --bins
AERGO_BINARIES = aergo-node aergo aergo-agent aergo-console

# A workspace: install the four programs (cargo install takes one package).
define AERGO_INSTALL_TARGET_CMDS
	$(foreach b,$(AERGO_BINARIES),\
		$(INSTALL) -D -m 0755 \
			$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/$(b) \
			$(TARGET_DIR)/usr/bin/$(b)$(sep))
endef

$(eval $(cargo-package))
