include $(sort $(wildcard $(BR2_EXTERNAL_AERGO_PATH)/package/*/*.mk))
